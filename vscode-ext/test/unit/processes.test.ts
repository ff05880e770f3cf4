import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProcess, inWorkspace, orderProcesses, parseProcessList, type ProcessInfo } from '../../src/processes';

function proc(pid: number, cwd: string, cmdline = 'python3 app.py'): ProcessInfo {
  return { pid, cmdline, python: '3.12.3', cwd, user: 'alice', attached: false };
}

describe('parseProcessList', () => {
  it('takes a list, or an object holding one', () => {
    // fp-lsp's fields (server/core/models.c), and the attached flag it adds.
    const list = [
      { pid: 7, ppid: 1, cmdline: ['python3', '-m', 'shop'], python_version: '3.8.18', cwd: '/srv', user: 'bob', attached: true },
    ];
    const want = {
      ok: true,
      processes: [{ pid: 7, cmdline: 'python3 -m shop', python: '3.8.18', cwd: '/srv', user: 'bob', attached: true }],
    };
    assert.deepEqual(parseProcessList(list), want);
    assert.deepEqual(parseProcessList({ processes: list }), want);
    assert.deepEqual(parseProcessList([{ pid: 8 }]), {
      ok: true,
      processes: [{ pid: 8, cmdline: '', python: '', cwd: '', user: '', attached: false }],
    });
  });

  it('refuses an answer it cannot show, saying what it got', () => {
    const r = parseProcessList({ error: 'nope' });
    assert.ok(!r.ok);
    assert.ok(r.message.includes('{"error":"nope"}'), r.message);
    const p = parseProcessList([{ pid: 1 }, { pid: '2' }]);
    assert.ok(!p.ok);
    assert.ok(p.message.includes('"pid":"2"'), p.message);
    assert.equal(parseProcessList([{ pid: -1 }]).ok, false);
    assert.equal(parseProcessList(null).ok, false);
  });
});

describe('orderProcesses', () => {
  const folders = ['/srv/shop'];

  it('knows a workspace process by its cwd or by a path in its command line', () => {
    assert.equal(inWorkspace(proc(1, '/srv/shop'), folders), true);
    assert.equal(inWorkspace(proc(1, '/srv/shop/api'), folders), true);
    assert.equal(inWorkspace(proc(1, '/', 'python3 /srv/shop/app.py'), folders), true);
    assert.equal(inWorkspace(proc(1, '/srv/shopping'), folders), false);
    assert.equal(inWorkspace(proc(1, '/tmp', 'python3 /srv/shopping/x.py'), folders), false);
  });

  it('puts the workspace processes first, each group by pid', () => {
    const list = [proc(30, '/tmp'), proc(20, '/srv/shop'), proc(10, '/home'), proc(5, '/', 'gunicorn /srv/shop/wsgi.py')];
    assert.deepEqual(
      orderProcesses(list, folders).map((p) => p.pid),
      [5, 20, 10, 30],
    );
    assert.deepEqual(
      orderProcesses(list, []).map((p) => p.pid),
      [5, 10, 20, 30],
    );
  });
});

describe('formatProcess', () => {
  it('shows pid and command line, Python version and user, cwd', () => {
    assert.deepEqual(formatProcess(proc(4242, '/srv/shop', 'python3 -m shop.app')), {
      label: '4242  python3 -m shop.app',
      description: 'Python 3.12.3 · alice',
      detail: 'cwd /srv/shop',
      pid: 4242,
    });
    assert.deepEqual(formatProcess({ ...proc(4242, '/srv/shop', 'python3 -m shop.app'), attached: true }).description, 'Python 3.12.3 · alice · attached');
    assert.deepEqual(formatProcess({ pid: 9, cmdline: '', python: '', cwd: '', user: '', attached: false }), {
      label: '9',
      description: '',
      detail: '',
      pid: 9,
    });
  });

  it('names the interpreter by its file name, its path in the detail', () => {
    const item = formatProcess(proc(7, '/srv/shop', '/root/.pyenv/versions/3.13.0/bin/python3 /srv/shop/app.py --port 80'));
    assert.equal(item.label, '7  python3 /srv/shop/app.py --port 80');
    assert.equal(item.detail, 'cwd /srv/shop · /root/.pyenv/versions/3.13.0/bin/python3');
  });

  it('cuts a long command line', () => {
    const item = formatProcess(proc(1, '/', 'x'.repeat(300)), 20);
    assert.equal(item.label, `1  ${'x'.repeat(19)}…`);
  });
});
