import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manifest } from './manifest';
import {
  attachArguments,
  commandArguments,
  LIST_PROCESSES,
  LOCAL_COMMANDS,
  PALETTE_COMMANDS,
  type PaletteCommand,
} from '../../src/commands';

const SERVER_COMMANDS = [
  'fp.attach',
  'fp.detach',
  'fp.watch',
  'fp.trace',
  'fp.monitor',
  'fp.profile',
  'fp.stop',
  'fp.reload',
  'fp.stack',
  LIST_PROCESSES,
];

function byId(id: string): PaletteCommand {
  const cmd = PALETTE_COMMANDS.find((c) => c.id === id);
  assert.ok(cmd, id);
  return cmd;
}

describe('commands', () => {
  it('registers exactly the commands package.json contributes', () => {
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    const registered = [...PALETTE_COMMANDS.map((c) => c.id), ...LOCAL_COMMANDS].sort();
    assert.deepEqual(registered, contributed);
    for (const c of manifest.contributes.commands) {
      assert.equal(c.category, 'fp', c.command);
    }
    for (const entries of Object.values(manifest.contributes.menus)) {
      for (const e of entries) {
        assert.ok(contributed.includes(e.command), e.command);
      }
    }
  });

  it('never takes an id vscode-languageclient registers for a server command', () => {
    for (const c of [...PALETTE_COMMANDS.map((p) => p.id), ...LOCAL_COMMANDS]) {
      assert.ok(!SERVER_COMMANDS.includes(c), c);
    }
    for (const c of PALETTE_COMMANDS) {
      assert.ok(SERVER_COMMANDS.includes(c.server), c.server);
    }
  });

  it('sends the document and cursor for a function command', () => {
    const editor = { uri: 'file:///srv/shop/cart.py', line: 41, character: 8 };
    assert.deepEqual(commandArguments(byId('fp.watchFunction'), editor), {
      ok: true,
      args: [{ textDocument: { uri: 'file:///srv/shop/cart.py' }, position: { line: 41, character: 8 } }],
    });
    assert.deepEqual(commandArguments(byId('fp.monitorFile'), editor), {
      ok: true,
      args: [{ textDocument: { uri: 'file:///srv/shop/cart.py' }, scope: 'file' }],
    });
    assert.deepEqual(commandArguments(byId('fp.showThreadStacks'), editor), { ok: true, args: [] });
  });

  it('says what to do when a function command has no editor', () => {
    const r = commandArguments(byId('fp.reloadFunction'), undefined);
    assert.ok(!r.ok);
    assert.ok(r.message.includes('open a Python file'), r.message);
    assert.deepEqual(commandArguments(byId('fp.detachProcess'), undefined), { ok: true, args: [] });
  });

  it('attaches one process, or it and its children', () => {
    assert.deepEqual(attachArguments(4242, false), [{ pid: 4242, children: false }]);
    assert.deepEqual(attachArguments(4242, true), [{ pid: 4242, children: true }]);
  });
});

describe('manifest', () => {
  it('runs on the workspace side and activates for Python', () => {
    assert.deepEqual(manifest.extensionKind, ['workspace']);
    assert.ok(manifest.activationEvents.includes('onLanguage:python'));
  });
});
