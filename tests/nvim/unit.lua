-- Unit tests of the plugin's pure functions (lua/fp/config.lua, lua/fp/util.lua), run in a
-- headless Neovim: nvim --headless -u tests/nvim/init.lua -c 'luafile tests/nvim/unit.lua'.
-- Prints "N passed, M failed" and exits 1 on any failure.
local config = require('fp.config')
local util = require('fp.util')

local passed, failed = 0, 0
local function test(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    io.stdout:write('FAIL ' .. name .. ': ' .. tostring(err) .. '\n')
  end
end

local function eq(got, want, what)
  if not vim.deep_equal(got, want) then
    error(('%s: got %s, want %s'):format(what or 'value', vim.inspect(got), vim.inspect(want)), 2)
  end
end

test('merge keeps the defaults', function()
  local opts, problems = config.merge(nil)
  eq(problems, {})
  eq(opts.watch, { expr = '', depth = 1, limit = 10 })
  eq(opts.lens_refresh_rate, 500)
  eq(opts.hot_line_threshold, 5)
  eq(opts.reload_on_save, false)
end)

test('merge takes good values and names bad ones', function()
  local opts, problems = config.merge({
    reload_on_save = true,
    watch = { depth = 3, limit = 0, colour = 1 },
    lens_refresh_rate = 50,
    hot_line_threshold = 2.5,
    nonsense = 1,
  })
  eq(opts.reload_on_save, true)
  eq(opts.watch.depth, 3)
  eq(opts.watch.limit, 10, 'a bad limit keeps the default')
  eq(opts.lens_refresh_rate, 500, 'a bad rate keeps the default')
  eq(opts.hot_line_threshold, 2.5)
  table.sort(problems)
  eq(#problems, 4, vim.inspect(problems))
  eq(problems[1], 'fp option lens_refresh_rate: expected whole milliseconds, 100 or more, got 50')
  eq(problems[2], 'fp option nonsense: unknown (see :help fp-options)')
  eq(problems[3], 'fp option watch.colour: unknown (expr, depth, limit)')
  eq(problems[4], 'fp option watch.limit: expected a whole number from 1 to 1000000, got 0')
end)

test('merge does not share tables with the defaults', function()
  local a = config.merge({ watch = { depth = 2 } })
  local b = config.merge(nil)
  eq(b.watch.depth, 1)
  a.filetypes[1] = 'lua'
  eq(config.defaults.filetypes[1], 'python')
end)

test('merge refuses a non-table', function()
  local _, problems = config.merge('yes')
  eq(problems, { 'setup() takes a table of options, not string' })
end)

test('init_options carry the server names and the VS Code ones', function()
  local o = config.init_options(config.merge({ hot_line_threshold = 2, lens_refresh_rate = 800, watch = { expr = 'args[0]' } }))
  eq(o, {
    reloadOnSave = false,
    hotThreshold = 2,
    hotLineThreshold = 2,
    lensRefreshMs = 800,
    lensRefreshRate = 800,
    watch = { expr = 'args[0]', depth = 1, limit = 10 },
  })
end)

test('server_cmd adds --debug when verbose', function()
  eq(config.server_cmd(config.merge(nil), '/x/fp-lsp'), { '/x/fp-lsp' })
  eq(config.server_cmd(config.merge({ trace_server = 'verbose' }), '/x/fp-lsp'), { '/x/fp-lsp', '--debug' })
end)

test('process_label', function()
  eq(util.process_label({ pid = 12, python_version = '3.12.1', cmdline = 'python app.py', user = 'ann', attached = true }),
    '12  Python 3.12.1  python app.py  [ann]  (attached)')
  eq(util.process_label({ pid = 7 }), '7')
  local long = util.process_label({ pid = 1, cmdline = string.rep('x', 100) })
  eq(#long, 1 + 2 + 80)
end)

test('sort_processes: attached first, then by pid', function()
  local sorted = util.sort_processes({ { pid = 30 }, { pid = 20, attached = true }, { pid = 10 }, { pid = 40, attached = true } })
  local pids = {}
  for _, p in ipairs(sorted) do
    table.insert(pids, p.pid)
  end
  eq(pids, { 20, 40, 10, 30 })
  eq(util.sort_processes(nil), {})
end)

test('status_text', function()
  eq(util.status_text(nil), '')
  eq(util.status_text({ processes = {} }), '')
  eq(util.status_text({ processes = { { pid = 5 } }, watching = 1, monitoring = 0, profiling = false }), 'fp 5 · watching 1')
  eq(util.status_text({ processes = { { pid = 1 }, { pid = 2 }, { pid = 3 }, { pid = 4 } }, monitoring = 2, profiling = true }),
    'fp 1,2,3,+1 · monitoring 2 · profiling')
end)

test('split_lenses', function()
  local fig = { data = { action = 'figures' }, command = { title = '3 calls' }, range = {} }
  local watch = { data = { action = 'watch' }, command = { title = 'watch' }, range = {} }
  local unresolved = { data = { action = 'figures' }, range = {} }
  local f, o = util.split_lenses({ fig, watch, unresolved })
  eq(f, { fig })
  eq(o, { watch, unresolved })
  f, o = util.split_lenses(nil)
  eq(f, {})
  eq(o, {})
end)

test('hint labels and lines', function()
  eq(util.hint_label({ label = ' 12.4% ' }), ' 12.4% ')
  eq(util.hint_label({ label = { { value = 'a' }, { value = 'b' }, 'junk' } }), 'ab')
  eq(util.hint_label({}), '')
  eq(util.hints_by_line({
    { position = { line = 3, character = 9 }, label = ' 12.4% ' },
    { position = { line = 3, character = 20 }, label = '2 calls' },
    { position = { line = 5 }, label = '' },
    { label = 'nowhere' },
  }), { [3] = '12.4% · 2 calls' })
end)

test('stack_lines of a stack model', function()
  local lines = util.stack_lines({
    pid = 42,
    python_version = '3.12.1',
    threads = {
      { name = 'MainThread', ident = 1, native_id = 42, main = true, state_name = 'sleeping', holds_gil = true,
        frames = { { file = '/a/app.py', line = 10, ['function'] = 'main', source = 'run()' },
                   { kind = 'native', file = 'libc.so.6', ['function'] = 'clock_nanosleep', offset = 16 } } },
      { name = 'idle', ident = 2, frames = {} },
    },
  })
  eq(lines, {
    'Process 42 (Python 3.12.1): 2 threads',
    '',
    'Thread MainThread (native 42, ident 1, main) sleeping [holds the GIL], most recent call last:',
    '  File "/a/app.py", line 10, in main',
    '    run()',
    '  <native> clock_nanosleep+0x10 in libc.so.6',
    '',
    'Thread idle (ident 2)',
    '  (no Python frames: idle, or between calls)',
  })
  eq(util.stack_lines({ text = 'a\nb' }), { 'a', 'b' })
  eq(#util.stack_lines({ processes = { { pid = 1, threads = {} }, { pid = 2, threads = {} } } }), 3)
  eq(util.stack_lines({ nothing = true }), nil)
  eq(util.stack_lines('x'), nil)
end)

test('parse_frame', function()
  eq({ util.parse_frame('  File "/a/app.py", line 10, in main') }, { '/a/app.py', 10 })
  eq({ util.parse_frame('MainThread /srv/x/mod.py:33 in f') }, { '/srv/x/mod.py', 33 })
  eq({ util.parse_frame('Thread MainThread (ident 1)') }, {})
  eq({ util.parse_frame(nil) }, {})
end)

test('error_text and failures', function()
  eq(util.error_text({ message = 'no process', data = { hint = 'attach first' } }), 'no process\nattach first')
  eq(util.error_text({ message = 'plain' }), 'plain')
  eq(util.failures({ failed = { { pid = 3, message = 'gone', hint = 'restart' }, { pid = 4, code = 'closed' } } }),
    { 'process 3: gone (restart)', 'process 4: closed' })
  eq(util.failures({}), {})
end)

test('offers', function()
  local caps = { executeCommandProvider = { commands = { 'fp.attach', 'fp.watch' } } }
  eq(util.offers(caps, 'fp.watch'), true)
  eq(util.offers(caps, 'fp.trace'), false)
  eq(util.offers({}, 'fp.watch'), false)
  eq(util.offers(nil, 'fp.watch'), false)
end)

test('has_cap', function()
  eq(util.has_cap('000001ffffffffff', util.CAP_SYS_PTRACE), true)
  eq(util.has_cap('0000000000000000', util.CAP_SYS_PTRACE), false)
  eq(util.has_cap('0000000000080000', 19), true)
  eq(util.has_cap('0000000000040000', 19), false)
  eq(util.has_cap('80000', 19), true)
  eq(util.has_cap('8000', 19), false)
  eq(util.has_cap(nil, 19), false)
  eq(util.has_cap('zz', 19), false)
end)

test('ptrace_verdict', function()
  eq((util.ptrace_verdict(0, false, false)), 'ok')
  eq((util.ptrace_verdict(nil, false, false)), 'ok')
  eq((util.ptrace_verdict(1, true, false)), 'ok')
  eq((util.ptrace_verdict(1, false, true)), 'ok')
  local level, msg = util.ptrace_verdict(1, false, false)
  eq(level, 'warn')
  assert(msg:find('ptrace_scope', 1, true), msg)
  eq((util.ptrace_verdict(2, false, false)), 'error')
  eq((util.ptrace_verdict(2, false, true)), 'ok')
  eq((util.ptrace_verdict(3, true, true)), 'error')
end)

test('monitor_scope and parse_pid', function()
  eq({ util.monitor_scope('') }, { 'function', false })
  eq({ util.monitor_scope(nil) }, { 'function', false })
  eq({ util.monitor_scope('file') }, { 'file', true })
  eq({ util.monitor_scope('off') }, { 'off', false })
  eq({ util.monitor_scope(' off  file ') }, { 'off', true })
  eq({ util.monitor_scope('file off') }, { 'off', true })
  local s, why = util.monitor_scope('all')
  eq(s, nil)
  assert(why:find("not 'all'", 1, true), why)
  eq((util.monitor_scope('off off')), nil)
  eq(util.parse_pid('123'), 123)
  eq(util.parse_pid(''), nil)
  local n, msg = util.parse_pid('abc')
  eq(n, nil)
  assert(msg:find("'abc' is not a process id", 1, true), msg)
  eq((util.parse_pid('1.5')), nil)
  eq((util.parse_pid('0')), nil)
end)

test('commands and <Plug> mappings, no keys mapped for the user', function()
  for _, c in ipairs({ 'FpAttach', 'FpDetach', 'FpWatch', 'FpTrace', 'FpMonitor', 'FpProfile', 'FpStop', 'FpReload', 'FpStack' }) do
    eq(vim.fn.exists(':' .. c), 2, c)
  end
  local plugs, others = {}, {}
  for _, m in ipairs(vim.api.nvim_get_keymap('n')) do
    local desc = m.desc or ''
    if m.lhs:find('^<Plug>%(fp%-') then
      plugs[m.lhs] = true
    elseif desc:find('^fp') then
      table.insert(others, m.lhs)
    end
  end
  for _, name in ipairs({ 'attach', 'detach', 'watch', 'trace', 'monitor', 'monitor-file', 'profile', 'profile-stop', 'stop', 'reload', 'stack', 'lens' }) do
    eq(plugs['<Plug>(fp-' .. name .. ')'], true, name)
  end
  eq(others, {}, 'keys mapped by the plugin')
end)

io.stdout:write(('%d passed, %d failed\n'):format(passed, failed))
vim.cmd(failed > 0 and 'cquit 1' or 'qall!')
