import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StartupLines, RestartBudget } from '../../src/restarts';

describe('RestartBudget', () => {
  it('allows max restarts within the window, then refuses', () => {
    const b = new RestartBudget(4, 180_000);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => b.allow(1000 + i * 10_000)), [true, true, true, true, false]);
  });

  it('forgets stops older than the window', () => {
    const b = new RestartBudget(2, 60_000);
    assert.equal(b.allow(0), true);
    assert.equal(b.allow(10_000), true);
    assert.equal(b.allow(20_000), false);
    // The stops at 0 and 10 s are out of the window at 75 s; the one at 20 s is still in.
    assert.equal(b.allow(75_000), true);
    assert.equal(b.allow(76_000), false);
  });
});

describe('StartupLines', () => {
  it('keeps the first non-blank lines', () => {
    const l = new StartupLines(2);
    assert.equal(l.first(), undefined);
    for (const s of ['', 'a', '  ', 'b', 'c']) {
      l.add(s);
    }
    assert.equal(l.first(), 'a');
    l.clear();
    assert.equal(l.first(), undefined);
  });
});
