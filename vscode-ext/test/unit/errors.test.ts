import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { extensionDir } from './manifest';
import { errorText, headingLine, outcome, readmeFile, serverError, troubleshootingHeading } from '../../src/errors';

const readme = readFileSync(path.join(extensionDir, 'README.md'), 'utf8');

describe('server errors', () => {
  it("keeps the server's message, code and remedy", () => {
    const e = serverError('cannot attach to process 1: permission denied', {
      code: 'permission',
      hint: 'run fp as the same user\n- or add CAP_SYS_PTRACE',
    });
    assert.deepEqual(e, {
      message: 'cannot attach to process 1: permission denied',
      code: 'permission',
      hint: 'run fp as the same user\n- or add CAP_SYS_PTRACE',
    });
    assert.equal(
      errorText('attaching to process 1', e),
      'fp: attaching to process 1: cannot attach to process 1: permission denied. run fp as the same user - or add CAP_SYS_PTRACE',
    );
    assert.deepEqual(serverError('fp.watch: no function x', undefined), { message: 'fp.watch: no function x', code: undefined, hint: '' });
  });

  it('opens a README section that exists for each kind of error', () => {
    for (const code of ['permission', 'not_python', 'no_process', 'agent_timeout', 'timeout', 'untrusted', 'missing_command', 'server', undefined, 'io']) {
      const heading = troubleshootingHeading(code);
      assert.notEqual(headingLine(readme, heading), undefined, `README.md has no heading "${heading}" (for ${String(code)})`);
    }
    assert.equal(troubleshootingHeading('permission'), 'Permission denied (ptrace)');
    assert.equal(headingLine('# a\ntext\n### Not here\n## B c\n', 'B c'), 3);
    assert.equal(headingLine('Not a heading\n', 'Not a heading'), undefined);
  });
});

describe('the README file', () => {
  it('is found as the checkout has it and as the .vsix stores it (readme.md)', () => {
    assert.equal(readmeFile(extensionDir), path.join(extensionDir, 'README.md'));
    const packaged = mkdtempSync(path.join(os.tmpdir(), 'fp-vsix-'));
    try {
      assert.equal(readmeFile(packaged), undefined);
      writeFileSync(path.join(packaged, 'readme.md'), '# fp\n');
      assert.equal(readmeFile(packaged), path.join(packaged, 'readme.md'));
    } finally {
      rmSync(packaged, { recursive: true, force: true });
    }
    assert.equal(readmeFile('/nonexistent/fp'), undefined);
  });
});

describe('command results', () => {
  it('says what attach did, and which processes failed with their remedy', () => {
    const all = outcome('fp.attach', { attached: [{ pid: 10, python_version: '3.12.1' }], failed: [] });
    assert.deepEqual(all, { level: 'info', message: 'attached to 10 (Python 3.12.1)', failures: [] });
    const some = outcome('fp.attach', {
      attached: [{ pid: 10, python_version: '3.12.1' }],
      failed: [{ pid: 11, code: 'permission', message: 'permission denied.', hint: 'run as root' }],
    });
    assert.equal(some.level, 'warning');
    assert.equal(some.message, 'attached to 10 (Python 3.12.1); failed in 11: permission denied (run as root)');
    assert.equal(some.failures[0]?.code, 'permission');
  });

  it('names the function and the processes of watch, monitor, stop, reload, detach', () => {
    assert.equal(
      outcome('fp.watch', { function: 'price', pids: [7], failed: [] }).message,
      'watching price in process 7: its calls appear as diagnostics on its line',
    );
    assert.equal(
      outcome('fp.monitor', { functions: ['rare'], pids: [7, 8], failed: [] }).message,
      'monitoring rare in processes 7, 8: the figures appear in the lenses',
    );
    assert.equal(outcome('fp.monitor', { functions: ['a', 'b', 'c'], pids: [7] }).message.startsWith('monitoring 3 functions'), true);
    assert.equal(outcome('fp.stop', { function: 'price', watches: 1, monitors: 0 }).message, 'stopped on price: 1 watch, 0 monitors');
    assert.equal(outcome('fp.reload', { function: 'price', pids: [7], reloaded: [] }).message, 'reloaded price in process 7');
    assert.equal(outcome('fp.detach', { detached: [7, 8] }).message, 'detached from processes 7, 8');
    assert.equal(outcome('fp.detach', { detached: [] }).message, 'no process was attached');
    assert.equal(outcome('fp.stack', null).message, 'fp.stack done');
  });
});
