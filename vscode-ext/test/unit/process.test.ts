import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { describeEnding, ServerProcess } from '../../src/process';
import { serverExecutable } from '../../src/settings';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'fp-vscode-proc-'));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function script(name: string, body: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('ServerProcess', () => {
  it('tells how a server that exits at once ended, after its stderr is read', async () => {
    const p = await ServerProcess.start(serverExecutable(script('early', 'echo "no can do" >&2; exit 2'), tmp, process.env));
    let err = '';
    p.child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const e = await p.waitClosed(10_000);
    assert.deepEqual(e, { code: 2, signal: null });
    assert.equal(err, 'no can do\n');
    assert.equal(describeEnding({ code: 2, signal: null }), 'exited with code 2');
  });

  it('runs in the workspace folder with the given environment', async () => {
    const exe = serverExecutable(script('where', 'echo "$PWD $FP_TEST_VALUE"'), tmp, { ...process.env, FP_TEST_VALUE: 'x1' });
    const p = await ServerProcess.start(exe);
    let out = '';
    p.child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await p.waitClosed(10_000);
    assert.equal(out, `${tmp} x1\n`);
  });

  it('rejects a file it cannot run', async () => {
    await assert.rejects(ServerProcess.start(serverExecutable(path.join(tmp, 'missing'), tmp, process.env)), /ENOENT/);
  });

  it('reaps a server that ignores the end of its input: SIGTERM after the grace', async () => {
    const p = await ServerProcess.start(serverExecutable(script('stuck', 'exec sleep 30'), tmp, process.env));
    assert.equal(p.ended, undefined);
    const t0 = Date.now();
    const e = await p.reap(200);
    assert.deepEqual(e, { code: null, signal: 'SIGTERM' });
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(describeEnding(e), 'was killed by SIGTERM');
  });

  it('reaps with SIGKILL a server that ignores SIGTERM', async () => {
    const p = await ServerProcess.start(
      serverExecutable(script('stubborn', "trap '' TERM; echo ready; while :; do sleep 1; done"), tmp, process.env),
    );
    // Wait until the trap is set (the script says so) before reaping.
    await new Promise<void>((resolve) => p.child.stdout.once('data', () => { resolve(); }));
    const e = await p.reap(200);
    assert.deepEqual(e, { code: null, signal: 'SIGKILL' });
  });
});
