// Finding fp-lsp and checking it is new enough. Plain Node (no `vscode` import), so the
// unit tests run it outside VS Code against real files.
import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import * as path from 'node:path';

/** The oldest fp-lsp whose protocol this extension speaks. */
export const MIN_SERVER_VERSION = '0.1.0';
export const SERVER_NAME = 'fp-lsp';

export type ServerSource = 'setting' | 'bundled' | 'PATH';

export interface ServerLocation {
  path: string;
  source: ServerSource;
}

/** A problem the user can fix: what happened, and what to do about it. */
export interface Problem {
  message: string;
  hint: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; problem: Problem };

export interface LookupInput {
  /** The fp.serverPath setting, as written ("" when unset). */
  configuredPath: string;
  /** The extension's install folder; a bundled server is `bin/fp-lsp` inside it. */
  extensionDir: string;
  /** Relative fp.serverPath values are taken from here (the first workspace folder). */
  workspaceDir: string | undefined;
  homeDir: string;
  /** The PATH the extension host runs with. */
  pathEnv: string | undefined;
  isExecutable?: (file: string) => boolean;
}

export function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) {
      return false;
    }
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Expands a leading `~` and makes a relative path absolute against the workspace folder. */
export function expandConfiguredPath(
  configured: string,
  homeDir: string,
  workspaceDir: string | undefined,
): string | undefined {
  let p = configured.trim();
  if (p === '~' || p.startsWith('~/')) {
    p = path.join(homeDir, p.slice(1));
  }
  if (path.isAbsolute(p)) {
    return path.normalize(p);
  }
  return workspaceDir === undefined ? undefined : path.join(workspaceDir, p);
}

/**
 * Where fp-lsp is: the fp.serverPath setting, else the binary bundled beside the extension,
 * else the first fp-lsp on PATH. A setting that points nowhere is an error, not a reason to
 * fall back silently: the user asked for that binary.
 */
export function resolveServer(input: LookupInput): Result<ServerLocation> {
  const executable = input.isExecutable ?? isExecutableFile;
  if (input.configuredPath.trim() !== '') {
    const p = expandConfiguredPath(input.configuredPath, input.homeDir, input.workspaceDir);
    if (p === undefined) {
      return fail(
        `fp.serverPath is the relative path "${input.configuredPath}", and no folder is open to take it from.`,
        'Set fp.serverPath to an absolute path, or open the folder it is relative to.',
      );
    }
    if (!executable(p)) {
      return fail(
        `fp.serverPath is set to ${p}, but there is no executable file there.`,
        'Build fp (`make build` puts the server in build/bin/fp-lsp), or correct fp.serverPath, or clear it to use fp-lsp from PATH.',
      );
    }
    return { ok: true, value: { path: p, source: 'setting' } };
  }
  const bundled = path.join(input.extensionDir, 'bin', SERVER_NAME);
  if (executable(bundled)) {
    return { ok: true, value: { path: bundled, source: 'bundled' } };
  }
  for (const dir of (input.pathEnv ?? '').split(path.delimiter)) {
    if (dir === '') {
      continue;
    }
    const candidate = path.join(dir, SERVER_NAME);
    if (executable(candidate)) {
      return { ok: true, value: { path: candidate, source: 'PATH' } };
    }
  }
  return fail(
    'fp-lsp was not found: fp.serverPath is empty, the extension has no bundled bin/fp-lsp, ' +
      `and no fp-lsp is on PATH (${input.pathEnv ?? 'PATH is not set'}).`,
    'Install fp (`make install` puts fp-lsp in /usr/local/bin), or set fp.serverPath to the fp-lsp executable.',
  );
}

export type Version = readonly [number, number, number];

/** Reads the version from the first line of `fp-lsp --version` ("fp-lsp 0.1.0"). */
export function parseServerVersion(output: string): Version | undefined {
  const first = output.split('\n', 1)[0]?.trim() ?? '';
  const m = /^fp-lsp (\d+)\.(\d+)\.(\d+)(?:[-+.\s].*)?$/.exec(first);
  if (m === null) {
    return undefined;
  }
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) {
      return d;
    }
  }
  return 0;
}

export function formatVersion(v: Version): string {
  return v.join('.');
}

/** Judges what `<server> --version` printed against MIN_SERVER_VERSION. */
export function checkServerVersion(serverPath: string, output: string, min = MIN_SERVER_VERSION): Result<string> {
  const version = parseServerVersion(output);
  const minimum = parseServerVersion(`fp-lsp ${min}`);
  if (minimum === undefined) {
    throw new Error(`bad minimum version ${min}`);
  }
  if (version === undefined) {
    const said = output.trim().split('\n', 1)[0] ?? '';
    return fail(
      `${serverPath} --version printed "${said}", not "fp-lsp X.Y.Z": it is not fp's language server.`,
      'Point fp.serverPath at the fp-lsp executable of fp (build/bin/fp-lsp after `make build`).',
    );
  }
  if (compareVersions(version, minimum) < 0) {
    return fail(
      `${serverPath} is fp-lsp ${formatVersion(version)}; this extension needs fp-lsp ${min} or newer.`,
      'Update fp (`make build && make install`), or point fp.serverPath at a newer fp-lsp.',
    );
  }
  return { ok: true, value: formatVersion(version) };
}

/** Runs `<server> --version` with a bounded wait; the output or what went wrong. */
export function probeServer(serverPath: string, timeoutMs = 5000): Promise<Result<string>> {
  return new Promise((resolve) => {
    execFile(serverPath, ['--version'], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ ok: true, value: stdout });
        return;
      }
      const why = err.killed
        ? `it did not answer within ${timeoutMs} ms`
        : (stderr.trim() || err.message).split('\n', 1)[0] ?? err.message;
      resolve(
        fail(
          `Running ${serverPath} --version failed: ${why}.`,
          'Check that fp-lsp runs in a terminal (`fp-lsp --version`), or point fp.serverPath at a working fp-lsp.',
        ),
      );
    });
  });
}

function fail<T>(message: string, hint: string): Result<T> {
  return { ok: false, problem: { message, hint } };
}
