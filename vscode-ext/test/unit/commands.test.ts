import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { extensionDir, manifest } from './manifest';
import {
  attachArguments,
  commandArguments,
  LIST_PROCESSES,
  LOCAL_COMMANDS,
  missingCommandMessage,
  missingCommands,
  PALETTE_COMMANDS,
  SERVER_COMMANDS,
  STATUS,
  type PaletteCommand,
} from '../../src/commands';

function byId(id: string): PaletteCommand {
  const cmd = PALETTE_COMMANDS.find((c) => c.id === id);
  assert.ok(cmd, id);
  return cmd;
}

/** The commands fp-lsp serves, read from its command table (server/lsp/commands.c). */
function servedBySource(): string[] {
  const source = readFileSync(path.join(extensionDir, '..', 'server', 'lsp', 'commands.c'), 'utf8');
  const table = source.slice(source.indexOf('commands_table[] = {'));
  return [...table.slice(0, table.indexOf('};')).matchAll(/\{"(fp\.[\w.]+)",/g)].map((m) => m[1] ?? '');
}

describe('commands', () => {
  it('registers exactly the commands package.json contributes, with stable ids', () => {
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    const registered = [...PALETTE_COMMANDS.map((c) => c.id), ...LOCAL_COMMANDS].sort();
    assert.deepEqual(registered, contributed);
    for (const c of manifest.contributes.commands) {
      assert.equal(c.category, 'fp', c.command);
    }
    for (const cmd of PALETTE_COMMANDS) {
      const declared = manifest.contributes.commands.find((c) => c.command === cmd.id);
      assert.equal(declared?.title, cmd.title, cmd.id);
    }
    // The ids keybindings use: renaming one breaks them.
    assert.deepEqual(
      PALETTE_COMMANDS.map((c) => c.id),
      [
        'fp.attachToProcess',
        'fp.detachProcess',
        'fp.watchFunction',
        'fp.traceFunction',
        'fp.monitorFunction',
        'fp.monitorFile',
        'fp.profileHotLines',
        'fp.stopProfiling',
        'fp.stopFunction',
        'fp.reloadFunction',
        'fp.showThreadStacks',
      ],
    );
  });

  it('puts the function commands in the editor context menu, under fp', () => {
    const menus = manifest.contributes.menus;
    assert.deepEqual(menus['editor/context'], [{ submenu: 'fp.editorContext', when: 'editorLangId == python', group: 'fp@1' }]);
    const inMenu = (menus['fp.editorContext'] ?? []).map((e) => e.command);
    for (const c of PALETTE_COMMANDS.filter((p) => p.target === 'function' || p.target === 'file')) {
      assert.ok(inMenu.includes(c.id), c.id);
    }
    assert.ok(inMenu.includes('fp.profileHotLines') && inMenu.includes('fp.showThreadStacks'));
    const contributed = manifest.contributes.commands.map((c) => c.command);
    for (const [menu, entries] of Object.entries(menus)) {
      for (const e of entries) {
        assert.ok(e.command === undefined || contributed.includes(e.command), `${menu}: ${e.command}`);
      }
    }
  });

  it('never takes an id vscode-languageclient registers for a server command', () => {
    for (const c of [...PALETTE_COMMANDS.map((p) => p.id), ...LOCAL_COMMANDS]) {
      assert.ok(!SERVER_COMMANDS.includes(c), c);
    }
    assert.ok(SERVER_COMMANDS.includes(LIST_PROCESSES) && SERVER_COMMANDS.includes(STATUS));
  });

  it("sends fp-lsp's names: those it serves, and the profiling ones (issue 16) it is getting", () => {
    const served = servedBySource();
    assert.ok(served.includes('fp.attach') && served.includes('fp.watch'), served.join(', '));
    const coming = ['fp.trace', 'fp.profile', 'fp.profile.stop', 'fp.stack'];
    for (const c of SERVER_COMMANDS) {
      assert.ok(served.includes(c) || coming.includes(c), `${c} is neither served by fp-lsp nor one of ${coming.join(', ')}`);
    }
    // What this source serves is all the extension sends, less what is still coming.
    assert.deepEqual(missingCommands(served).filter((c) => !coming.includes(c)), []);
  });

  it("sends a function as {uri, line}, a file as {uri, scope: 'file'}", () => {
    const editor = { uri: 'file:///srv/shop/cart.py', line: 41, character: 8 };
    assert.deepEqual(commandArguments(byId('fp.watchFunction'), editor), {
      ok: true,
      args: [{ uri: 'file:///srv/shop/cart.py', line: 41 }],
    });
    assert.deepEqual(commandArguments(byId('fp.traceFunction'), editor), {
      ok: true,
      args: [{ uri: 'file:///srv/shop/cart.py', line: 41 }],
    });
    assert.deepEqual(commandArguments(byId('fp.monitorFile'), editor), {
      ok: true,
      args: [{ uri: 'file:///srv/shop/cart.py', scope: 'file' }],
    });
  });

  it('sends a process command {pid} for one process, {} for every attached one', () => {
    assert.deepEqual(commandArguments(byId('fp.showThreadStacks'), undefined, 4242), { ok: true, args: [{ pid: 4242 }] });
    assert.deepEqual(commandArguments(byId('fp.profileHotLines'), undefined), { ok: true, args: [{}] });
    assert.deepEqual(commandArguments(byId('fp.detachProcess'), undefined), { ok: true, args: [{}] });
  });

  it('says what to do when a function command has no editor', () => {
    const r = commandArguments(byId('fp.reloadFunction'), undefined);
    assert.ok(!r.ok);
    assert.ok(r.message.startsWith('Reload Function Into Process acts on the function'), r.message);
    assert.ok(r.message.includes('open a Python file'), r.message);
  });

  it('attaches one process, or it and its children', () => {
    assert.deepEqual(attachArguments(4242, false), [{ pid: 4242, children: false }]);
    assert.deepEqual(attachArguments(4242, true), [{ pid: 4242, children: true }]);
  });

  it('names a command the running server does not serve, and what to do', () => {
    const served = ['fp.listProcesses', 'fp.attach', 'fp.watch'];
    const missing = missingCommands(served);
    assert.ok(missing.includes('fp.trace') && missing.includes('fp.profile.stop'));
    assert.ok(!missing.includes('fp.watch'));
    assert.deepEqual(missingCommands(undefined), [...SERVER_COMMANDS]);
    const m = missingCommandMessage('fp.trace', { version: '0.1.0', path: '/opt/fp/bin/fp-lsp' }, served);
    assert.equal(
      m.message,
      '"Trace This Function" (fp.trace) is not served by this fp-lsp (0.1.0 at /opt/fp/bin/fp-lsp); it serves fp.listProcesses, fp.attach, fp.watch.',
    );
    assert.ok(m.hint.includes('Restart fp-lsp'), m.hint);
    const lens = missingCommandMessage('fp.status', { version: '0.1.0', path: '/x' }, []);
    assert.ok(lens.message.startsWith('fp.status is not served') && lens.message.endsWith('it serves none.'), lens.message);
  });
});

describe('manifest', () => {
  it('runs on the workspace side and activates for Python', () => {
    assert.deepEqual(manifest.extensionKind, ['workspace']);
    assert.ok(manifest.activationEvents.includes('onLanguage:python'));
  });
});
