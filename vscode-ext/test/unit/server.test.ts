import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { extensionDir } from './manifest';
import {
  checkServerVersion,
  compareVersions,
  expandConfiguredPath,
  isExecutableFile,
  MIN_SERVER_VERSION,
  parseServerVersion,
  probeServer,
  resolveServer,
  type LookupInput,
  type Problem,
  type Result,
} from '../../src/server';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'fp-vscode-unit-'));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A real executable script at `rel` under the temp folder. */
function script(rel: string, body: string, mode = 0o755): string {
  const file = path.join(tmp, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, mode);
  return file;
}

function problemOf(r: Result<unknown>): Problem {
  assert.ok(!r.ok, `expected a problem, got ${JSON.stringify(r)}`);
  return r.problem;
}

function input(over: Partial<LookupInput>): LookupInput {
  return {
    configuredPath: '',
    extensionDir: path.join(tmp, 'no-extension'),
    workspaceDir: undefined,
    homeDir: path.join(tmp, 'home'),
    pathEnv: '',
    ...over,
  };
}

describe('resolveServer', () => {
  const onPath1 = script('path1/fp-lsp', 'echo fp-lsp 0.1.0');
  const onPath2 = script('path2/fp-lsp', 'echo fp-lsp 0.1.0');
  const bundled = script('ext/bin/fp-lsp', 'echo fp-lsp 0.1.0');
  const notExecutable = script('plain/fp-lsp', 'echo fp-lsp 0.1.0', 0o644);
  mkdirSync(path.join(tmp, 'dir/fp-lsp'), { recursive: true });
  const pathEnv = [path.join(tmp, 'dir'), '', path.join(tmp, 'path1'), path.join(tmp, 'path2')].join(path.delimiter);

  it('takes fp.serverPath first', () => {
    const r = resolveServer(input({ configuredPath: onPath2, extensionDir: path.join(tmp, 'ext'), pathEnv }));
    assert.deepEqual(r, { ok: true, value: { path: onPath2, source: 'setting' } });
  });

  it('does not fall back when fp.serverPath points nowhere, and names the path', () => {
    const r = resolveServer(input({ configuredPath: notExecutable, extensionDir: path.join(tmp, 'ext'), pathEnv }));
    const p = problemOf(r);
    assert.ok(p.message.includes(notExecutable), p.message);
    assert.ok(p.hint.includes('fp.serverPath'), p.hint);
  });

  it('reads a relative fp.serverPath from the workspace folder and ~ from home', () => {
    const r = resolveServer(input({ configuredPath: 'path1/fp-lsp', workspaceDir: tmp }));
    assert.deepEqual(r, { ok: true, value: { path: onPath1, source: 'setting' } });
    const h = resolveServer(input({ configuredPath: '~/fp-lsp', homeDir: path.join(tmp, 'path2') }));
    assert.deepEqual(h, { ok: true, value: { path: onPath2, source: 'setting' } });
  });

  it('refuses a relative fp.serverPath with no folder open', () => {
    const r = resolveServer(input({ configuredPath: 'build/bin/fp-lsp' }));
    assert.ok(problemOf(r).message.includes('no folder is open'));
  });

  it('takes the bundled server before PATH', () => {
    const r = resolveServer(input({ extensionDir: path.join(tmp, 'ext'), pathEnv }));
    assert.deepEqual(r, { ok: true, value: { path: bundled, source: 'bundled' } });
  });

  it('takes the first executable file on PATH, skipping directories and empty entries', () => {
    const r = resolveServer(input({ pathEnv }));
    assert.deepEqual(r, { ok: true, value: { path: onPath1, source: 'PATH' } });
  });

  it('says where it looked when there is none', () => {
    const r = resolveServer(input({ pathEnv: path.join(tmp, 'plain') }));
    const p = problemOf(r);
    assert.ok(p.message.includes(path.join(tmp, 'plain')), p.message);
    assert.ok(p.hint.includes('make install'), p.hint);
  });

  it('knows an executable file from a directory or a plain file', () => {
    assert.equal(isExecutableFile(onPath1), true);
    assert.equal(isExecutableFile(notExecutable), false);
    assert.equal(isExecutableFile(path.join(tmp, 'dir/fp-lsp')), false);
    assert.equal(isExecutableFile(path.join(tmp, 'missing')), false);
  });

  it('normalises configured paths', () => {
    assert.equal(expandConfiguredPath(' /a/b/../fp-lsp ', '/home/u', undefined), '/a/fp-lsp');
    assert.equal(expandConfiguredPath('~', '/home/u', undefined), '/home/u');
    assert.equal(expandConfiguredPath('x', '/home/u', undefined), undefined);
  });
});

describe('server version', () => {
  it('reads the first line of --version', () => {
    assert.deepEqual(parseServerVersion('fp-lsp 0.1.0\nlibuv 1.44.2\n'), [0, 1, 0]);
    assert.deepEqual(parseServerVersion('fp-lsp 1.20.3-dev\n'), [1, 20, 3]);
    assert.equal(parseServerVersion('fp 0.1.0\n'), undefined);
    assert.equal(parseServerVersion('libuv 1.44.2\nfp-lsp 0.1.0\n'), undefined);
    assert.equal(parseServerVersion(''), undefined);
  });

  it('compares numerically, not as text', () => {
    assert.ok(compareVersions([0, 10, 0], [0, 9, 9]) > 0);
    assert.ok(compareVersions([0, 1, 0], [0, 1, 0]) === 0);
    assert.ok(compareVersions([0, 0, 9], [0, 1, 0]) < 0);
  });

  it('accepts the minimum and newer, refuses older with the fix', () => {
    assert.deepEqual(checkServerVersion('/x/fp-lsp', `fp-lsp ${MIN_SERVER_VERSION}\n`), { ok: true, value: MIN_SERVER_VERSION });
    assert.deepEqual(checkServerVersion('/x/fp-lsp', 'fp-lsp 2.0.0\n'), { ok: true, value: '2.0.0' });
    const old = checkServerVersion('/x/fp-lsp', 'fp-lsp 0.0.9\n', '0.1.0');
    assert.equal(problemOf(old).message, '/x/fp-lsp is fp-lsp 0.0.9; this extension needs fp-lsp 0.1.0 or newer.');
    assert.ok(problemOf(old).hint.includes('fp.serverPath'));
    const other = checkServerVersion('/usr/bin/python3', 'Python 3.11.2\n');
    assert.ok(problemOf(other).message.includes('"Python 3.11.2"'));
  });
});

describe('probeServer', () => {
  it('returns what --version printed', async () => {
    const old = script('old/fp-lsp', 'test "$1" = --version && echo "fp-lsp 0.0.9"');
    const r = await probeServer(old);
    assert.deepEqual(r, { ok: true, value: 'fp-lsp 0.0.9\n' });
  });

  it('reports a server that exits with an error, with its message', async () => {
    const bad = script('bad/fp-lsp', 'echo "error while loading shared libraries: libuv.so.1" >&2; exit 127');
    const r = await probeServer(bad);
    assert.ok(problemOf(r).message.includes('libuv.so.1'), JSON.stringify(r));
  });

  it('gives up on a server that does not answer, within the bound', async () => {
    const stuck = script('stuck/fp-lsp', 'exec sleep 30');
    const t0 = Date.now();
    const r = await probeServer(stuck, 300);
    assert.ok(problemOf(r).message.includes('did not answer within 300 ms'), JSON.stringify(r));
    assert.ok(Date.now() - t0 < 10_000);
  });

  // The real server, when this checkout has been built (`make build`).
  const built = process.env.FP_BUILD ?? path.resolve(extensionDir, '..', 'build');
  const real = path.join(built, 'bin', 'fp-lsp');
  it('accepts the fp-lsp of this checkout', { skip: isExecutableFile(real) ? false : `${real} not built` }, async () => {
    const r = await probeServer(real);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(checkServerVersion(real, r.value), { ok: true, value: r.value.split('\n')[0]?.split(' ')[1] });
  });
});
