// Reads the extension's package.json for tests that check the code agrees with it.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export interface Manifest {
  extensionKind: string[];
  activationEvents: string[];
  contributes: {
    commands: { command: string; title: string; category: string }[];
    menus: Record<string, { command?: string; submenu?: string; when?: string; group?: string }[]>;
    configuration: { properties: Record<string, { default: unknown; minimum?: number; maximum?: number }> };
  };
}

// Compiled to out/test/unit/, three levels below the extension folder.
export const extensionDir = path.resolve(__dirname, '..', '..', '..');

export const manifest = JSON.parse(readFileSync(path.join(extensionDir, 'package.json'), 'utf8')) as Manifest;
