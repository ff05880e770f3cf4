import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NOTHING_ATTACHED, parseStatus, statusActions, statusView } from '../../src/status';

// fp/status as fp-lsp sends it (server/lsp/commands.c, commands_status_model).
const two = {
  processes: [
    { pid: 4242, python_version: '3.12.1', cmdline: 'python3 -m shop' },
    { pid: 4250, parent: 4242, python_version: '3.12.1', cmdline: 'python3 -m shop worker' },
  ],
  monitoring: 12,
  watching: 1,
  profiling: true,
};

describe('fp/status', () => {
  it('reads what fp-lsp sends', () => {
    assert.deepEqual(parseStatus(two), {
      processes: [
        { pid: 4242, parent: undefined, python: '3.12.1', cmdline: 'python3 -m shop' },
        { pid: 4250, parent: 4242, python: '3.12.1', cmdline: 'python3 -m shop worker' },
      ],
      monitoring: 12,
      watching: 1,
      profiling: true,
    });
    assert.deepEqual(parseStatus({ processes: [] }), NOTHING_ATTACHED);
    assert.equal(parseStatus({ processes: [{ pid: 'x' }] }), undefined);
    assert.equal(parseStatus(null), undefined);
    assert.equal(parseStatus({ monitoring: -3, processes: [] })?.monitoring, 0);
  });

  it('shows the processes and what is active', () => {
    const s = parseStatus(two);
    assert.ok(s);
    const v = statusView(s);
    assert.equal(v.text, '$(pulse) fp: 4242 +1 · monitoring 12 functions · watching 1 · profiling');
    assert.ok(v.tooltip.includes('4250 (child of 4242), Python 3.12.1: python3 -m shop worker'), v.tooltip);
    const one = statusView({ ...s, processes: s.processes.slice(0, 1), monitoring: 1, watching: 0, profiling: false });
    assert.equal(one.text, '$(pulse) fp: 4242 · monitoring 1 function');
    assert.equal(statusView(NOTHING_ATTACHED).text, '$(debug-disconnect) fp: not attached');
  });

  it('offers the actions that fit the state', () => {
    const none = statusActions(NOTHING_ATTACHED).map((a) => a.command);
    assert.deepEqual(none, ['fp.attachToProcess', 'fp.showLog', 'fp.restartServer']);
    const s = parseStatus(two);
    assert.ok(s);
    const busy = statusActions(s).map((a) => a.command);
    assert.deepEqual(busy, ['fp.attachToProcess', 'fp.detachProcess', 'fp.stopProfiling', 'fp.showThreadStacks', 'fp.showLog', 'fp.restartServer']);
    assert.ok(statusActions({ ...s, profiling: false }).some((a) => a.command === 'fp.profileHotLines'));
  });
});
