// The extension's client logic against the real fp-lsp and a real service, in plain Node: the
// server process as the extension starts it (process.ts, settings.ts), spoken to over
// vscode-jsonrpc (the wire vscode-languageclient uses), with the extension's own command
// arguments, process list, status, results and errors (commands.ts, processes.ts, status.ts,
// errors.ts). No VS Code and no mock: what the extension sends must be what fp-lsp reads, and
// what fp-lsp answers must be what the extension shows.
//
// Needs build/bin/fp-lsp (FP_BUILD moves it) and a CPython 3.8+ (FP_E2E_PYTHON, else the newest
// pyenv one, else /usr/bin/python3); skipped, saying so, when fp-lsp is not built.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import { extensionDir } from '../unit/manifest';
import { attachArguments, commandArguments, LIST_PROCESSES, missingCommands, PALETTE_COMMANDS, STATUS } from '../../src/commands';
import { headingLine, outcome, serverError, troubleshootingHeading } from '../../src/errors';
import { orderProcesses, parseProcessList } from '../../src/processes';
import { ServerProcess } from '../../src/process';
import { initializationOptions, readSettings, serverExecutable } from '../../src/settings';
import { parseStatus, statusView, type ServerStatus } from '../../src/status';

const repo = path.resolve(extensionDir, '..');
const build = process.env.FP_BUILD ?? path.join(repo, 'build');
const fpLsp = path.join(build, 'bin', 'fp-lsp');
const missing = existsSync(fpLsp) ? undefined : `fp-lsp is not built at ${fpLsp}: run \`make build\` (or set FP_BUILD)`;

function python(): string {
  const chosen = process.env.FP_E2E_PYTHON;
  if (chosen !== undefined && chosen !== '') {
    return chosen;
  }
  const versions = path.join(process.env.PYENV_ROOT ?? path.join(os.homedir(), '.pyenv'), 'versions');
  const found = existsSync(versions)
    ? readdirSync(versions)
        .map((v) => /^3\.(\d+)\.(\d+)$/.exec(v))
        .filter((m): m is RegExpExecArray => m !== null && Number(m[1]) >= 8)
        .sort((a, b) => Number(b[1]) - Number(a[1]) || Number(b[2]) - Number(a[2]))
        .map((m) => path.join(versions, m[0], 'bin', 'python3'))
        .filter((p) => existsSync(p))
    : [];
  return found[0] ?? '/usr/bin/python3';
}

/** Polls `probe` every 50 ms for at most `ms`; fails with what `seen` says was there. */
async function waitFor<T>(what: string, ms: number, probe: () => T | undefined | false, seen: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; seen: ${seen()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function lineOf(file: string, re: RegExp): number {
  const i = readFileSync(file, 'utf8').split('\n').findIndex((l) => re.test(l));
  assert.ok(i >= 0, `${re} in ${file}`);
  return i;
}

function byId(id: string): (typeof PALETTE_COMMANDS)[number] {
  const c = PALETTE_COMMANDS.find((p) => p.id === id);
  assert.ok(c, id);
  return c;
}

describe('the extension with the real fp-lsp and a real service', { skip: missing }, () => {
  let dir = '';
  let service = '';
  let target: ChildProcess | undefined;
  let server: ServerProcess | undefined;
  let conn: MessageConnection | undefined;
  let out = '';
  let stderr = '';
  const statuses: ServerStatus[] = [];
  const diagnostics = new Map<string, { message: string; severity?: number; range: { start: { line: number } } }[]>();
  let served: string[] = [];

  const execute = (command: string, args: unknown[]): Promise<unknown> => {
    if (conn === undefined) {
      throw new Error('fp-lsp is not connected');
    }
    return conn.sendRequest('workspace/executeCommand', { command, arguments: args });
  };
  const lastStatus = (): ServerStatus | undefined => statuses[statuses.length - 1];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fp-vscode-live-'));
    for (const f of ['lsp_service.py', 'fptarget.py']) {
      cpSync(path.join(repo, 'tests', 'targets', f), path.join(dir, f));
    }
    service = path.join(dir, 'lsp_service.py');
    const ready = path.join(dir, 'ready');
    const t = spawn(python(), [service, ready], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    target = t;
    t.stdout.on('data', (d: Buffer) => (out += d.toString()));
    t.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor('the service to be ready', 20_000, () => existsSync(ready) && readFileSync(ready, 'utf8').includes('\nready\n'), () => stderr);

    // As the extension starts it: the resolved binary over stdio, in the workspace folder.
    server = await ServerProcess.start(serverExecutable(fpLsp, dir, process.env));
    const child = server.child;
    child.stderr.on('data', () => undefined); // its log; the extension shows it in the output channel
    conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    conn.onNotification('fp/status', (p: unknown) => {
      const s = parseStatus(p);
      assert.ok(s, `fp/status ${JSON.stringify(p)}`);
      statuses.push(s);
    });
    conn.onNotification('textDocument/publishDiagnostics', (p: { uri: string; diagnostics: [] }) => {
      diagnostics.set(p.uri, p.diagnostics);
    });
    conn.onRequest(() => null); // refreshes, progress: nothing to do here
    conn.listen();
    const settings = readSettings((key) => ({ 'watch.limit': 3 })[key]);
    const init = await conn.sendRequest<{ capabilities: { executeCommandProvider?: { commands?: string[] } } }>('initialize', {
      processId: process.pid,
      rootUri: `file://${dir}`,
      capabilities: {},
      initializationOptions: initializationOptions(settings),
    });
    served = init.capabilities.executeCommandProvider?.commands ?? [];
    await conn.sendNotification('initialized', {});
    const text = readFileSync(service, 'utf8');
    await conn.sendNotification('textDocument/didOpen', {
      textDocument: { uri: `file://${service}`, languageId: 'python', version: 1, text },
    });
  });

  after(async () => {
    try {
      if (conn !== undefined && server?.ended === undefined) {
        await Promise.race([conn.sendRequest('shutdown'), new Promise((r) => setTimeout(r, 5000))]);
        await conn.sendNotification('exit');
      }
    } finally {
      conn?.dispose();
      if (server !== undefined) {
        await server.reap();
      }
      const t = target;
      if (t?.exitCode === null) {
        t.kill('SIGTERM');
        await new Promise((r) => t.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves the commands the extension sends, less the ones still coming', () => {
    assert.ok(served.includes(LIST_PROCESSES) && served.includes(STATUS) && served.includes('fp.attach'), served.join(', '));
    const absent = missingCommands(served);
    for (const c of absent) {
      assert.ok(['fp.trace', 'fp.profile', 'fp.profile.stop', 'fp.stack'].includes(c), `${c} is not served`);
    }
  });

  it('lists the service first for its workspace, and attaches to it', async () => {
    const list = parseProcessList(await execute(LIST_PROCESSES, []));
    assert.ok(list.ok, list.ok ? '' : list.message);
    const first = orderProcesses(list.processes, [dir])[0];
    assert.equal(first?.pid, target?.pid, JSON.stringify(list.processes.slice(0, 3)));
    assert.match(first?.python ?? '', /^3\.\d+/);
    const pid = target?.pid ?? 0;
    const o = outcome('fp.attach', await execute('fp.attach', attachArguments(pid, false)));
    assert.deepEqual([o.level, o.failures], ['info', []]);
    assert.match(o.message, new RegExp(`^attached to ${pid} \\(Python 3\\.\\d+\\.\\d+\\)$`));
    const s = await waitFor('fp/status with the service', 10_000, () => lastStatus()?.processes.some((p) => p.pid === pid) && lastStatus(), () => JSON.stringify(lastStatus()));
    assert.equal(statusView(s).text, `$(pulse) fp: ${pid}`);
  });

  it('monitors the function at the cursor: {uri, line} reaches the right one', async () => {
    const uri = `file://${service}`;
    const built = commandArguments(byId('fp.monitorFunction'), { uri, line: lineOf(service, /^def rare\(/) + 1, character: 4 });
    assert.ok(built.ok);
    const o = outcome('fp.monitor', await execute('fp.monitor', built.args));
    assert.equal(o.message, `monitoring rare in process ${target?.pid ?? 0}: the figures appear in the lenses`);
    const s = await waitFor('fp/status monitoring 1', 10_000, () => lastStatus()?.monitoring === 1 && lastStatus(), () => JSON.stringify(lastStatus()));
    assert.match(statusView(s).text, / · monitoring 1 function$/);
  });

  it("watches the function at the cursor: the diagnostic carries the service's values", async () => {
    const uri = `file://${service}`;
    const built = commandArguments(byId('fp.watchFunction'), { uri, line: lineOf(service, /^\s+base = \{/), character: 0 });
    assert.ok(built.ok);
    const o = outcome('fp.watch', await execute('fp.watch', built.args));
    assert.equal(o.message, `watching price in process ${target?.pid ?? 0}: its calls appear as diagnostics on its line`);
    const ds = await waitFor('price() diagnostics', 15_000, () => diagnostics.get(uri)?.length === 3 && diagnostics.get(uri), () => JSON.stringify(diagnostics.get(uri)));
    for (const d of ds) {
      assert.equal(d.range.start.line, lineOf(service, /^def price\(/));
      assert.match(d.message, /^price: args=\('apple', 2.* · return_obj=6 · [\d.]+ ms$/);
    }
    const s = await waitFor('fp/status watching', 10_000, () => lastStatus(), () => '');
    assert.match(statusView(s).text, /monitoring 1 function/);
  });

  it('reloads the function at the cursor as the editor has it, unsaved', async () => {
    const uri = `file://${service}`;
    const edited = readFileSync(service, 'utf8').replace('return discount(base * qty)', 'return discount(base * qty) + 1000');
    assert.ok(edited.includes('+ 1000'));
    await conn?.sendNotification('textDocument/didChange', { textDocument: { uri, version: 2 }, contentChanges: [{ text: edited }] });
    const built = commandArguments(byId('fp.reloadFunction'), { uri, line: lineOf(service, /^\s+base = \{/), character: 0 });
    assert.ok(built.ok);
    const o = outcome('fp.reload', await execute('fp.reload', built.args));
    assert.deepEqual([o.level, o.message], ['info', `reloaded price in process ${target?.pid ?? 0}`]);
    // price("apple", 2) was 6: the service now prints what the edited text returns.
    await waitFor('the service to print price=1006', 10_000, () => out.includes('price=1006'), () => out.slice(-200));
  });

  it("answers a command it does not serve with an error, which is why the extension asks first", async (t) => {
    const absent = missingCommands(served)[0];
    if (absent === undefined) {
      t.skip('this fp-lsp serves every command the extension sends');
      return;
    }
    await assert.rejects(execute(absent, [{}]), (err: Error) => err.message.includes(`no command '${absent}'`));
  });

  it("keeps the server's remedy for an attach it refuses, and has a README section for it", async () => {
    let e: ReturnType<typeof serverError> | undefined;
    try {
      await execute('fp.attach', attachArguments(1, false));
    } catch (err) {
      const r = err as { message: string; data?: unknown };
      e = serverError(r.message, r.data);
    }
    assert.ok(e, 'attaching to pid 1 was refused');
    assert.ok(['not_python', 'permission', 'exiting'].includes(e.code ?? ''), JSON.stringify(e));
    const readme = readFileSync(path.join(extensionDir, 'README.md'), 'utf8');
    assert.notEqual(headingLine(readme, troubleshootingHeading(e.code)), undefined);
  });

  it('stops, then detaches, and the service goes on', async () => {
    const uri = `file://${service}`;
    const built = commandArguments(byId('fp.stopFunction'), { uri, line: lineOf(service, /^\s+base = \{/), character: 0 });
    assert.ok(built.ok);
    assert.equal(outcome('fp.stop', await execute('fp.stop', built.args)).message, 'stopped on price: 1 watch, 0 monitors');
    const detach = commandArguments(byId('fp.detachProcess'), undefined, target?.pid);
    assert.ok(detach.ok);
    assert.equal(outcome('fp.detach', await execute('fp.detach', detach.args)).message, `detached from process ${target?.pid ?? 0}`);
    const s = await waitFor('fp/status without processes', 10_000, () => lastStatus()?.processes.length === 0 && lastStatus(), () => JSON.stringify(lastStatus()));
    assert.equal(statusView(s).text, '$(debug-disconnect) fp: not attached');
    const ticks = out.split('\n').length;
    await waitFor('more ticks after detach', 10_000, () => out.split('\n').length > ticks + 2, () => out.slice(-200));
    assert.ok(!out.includes('ERROR'), out);
    assert.equal(target?.exitCode, null);
  });
});
