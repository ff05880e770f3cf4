-- Pure functions of the plugin: how fp-lsp's models read in Neovim (the picker's items, the
-- statusline, the stack buffer, the lenses split into figures and actions, inlay hints as
-- end-of-line text, error messages) and the permission checks of :checkhealth. No editor
-- state: the unit tests (tests/nvim/unit.lua) call them directly.
local M = {}

--- One line of the attach picker: "1234  Python 3.12.1  python app.py  (attached)".
function M.process_label(p)
  local parts = { tostring(p.pid) }
  if p.python_version and p.python_version ~= '' then
    table.insert(parts, 'Python ' .. p.python_version)
  end
  local cmdline = p.cmdline or ''
  if #cmdline > 80 then
    cmdline = cmdline:sub(1, 77) .. '...'
  end
  if cmdline ~= '' then
    table.insert(parts, cmdline)
  end
  if p.user and p.user ~= '' then
    table.insert(parts, '[' .. p.user .. ']')
  end
  local label = table.concat(parts, '  ')
  if p.attached then
    label = label .. '  (attached)'
  end
  return label
end

--- The processes in the order worth reading: attached first, then by pid.
function M.sort_processes(procs)
  local out = {}
  for _, p in ipairs(procs or {}) do
    table.insert(out, p)
  end
  table.sort(out, function(a, b)
    if (a.attached == true) ~= (b.attached == true) then
      return a.attached == true
    end
    return (tonumber(a.pid) or 0) < (tonumber(b.pid) or 0)
  end)
  return out
end

--- The statusline text of an fp/status model: "" when nothing is attached, else
--- "fp 1234 · watching 1 · monitoring 2 · profiling".
function M.status_text(status)
  if type(status) ~= 'table' or type(status.processes) ~= 'table' or #status.processes == 0 then
    return ''
  end
  local pids = {}
  for _, p in ipairs(status.processes) do
    table.insert(pids, tostring(p.pid))
  end
  local shown = #pids > 3 and (table.concat({ pids[1], pids[2], pids[3] }, ',') .. ',+' .. (#pids - 3))
    or table.concat(pids, ',')
  local parts = { 'fp ' .. shown }
  local function count(key, word)
    local n = tonumber(status[key]) or 0
    if n > 0 then
      table.insert(parts, word .. ' ' .. n)
    end
  end
  count('watching', 'watching')
  count('monitoring', 'monitoring')
  count('tracing', 'tracing')
  if status.profiling == true then
    table.insert(parts, 'profiling')
  end
  return table.concat(parts, ' · ')
end

--- Resolved lenses split in two: the live figures of monitored functions (drawn as fp's own
--- virtual text) and the rest (actions, "changed since loaded", shown through
--- vim.lsp.codelens). A figures lens is fp-lsp's "figures" action.
function M.split_lenses(lenses)
  local figures, others = {}, {}
  for _, lens in ipairs(lenses or {}) do
    local action = type(lens.data) == 'table' and lens.data.action or nil
    if action == 'figures' and lens.command and lens.command.title then
      table.insert(figures, lens)
    else
      table.insert(others, lens)
    end
  end
  return figures, others
end

--- The text of an inlay hint's label (a string, or parts with .value).
function M.hint_label(hint)
  local label = hint and hint.label
  if type(label) == 'string' then
    return label
  end
  if type(label) == 'table' then
    local parts = {}
    for _, part in ipairs(label) do
      if type(part) == 'table' and type(part.value) == 'string' then
        table.insert(parts, part.value)
      end
    end
    return table.concat(parts)
  end
  return ''
end

--- Inlay hints grouped by 0-based line, as the end-of-line text drawn where Neovim has no
--- native inlay hints: { [line] = "text · text" }, lines in order of appearance.
function M.hints_by_line(hints)
  local by_line = {}
  for _, h in ipairs(hints or {}) do
    local line = h.position and tonumber(h.position.line)
    local text = M.hint_label(h)
    if line and text ~= '' then
      text = text:gsub('^%s+', ''):gsub('%s+$', '')
      by_line[line] = by_line[line] and (by_line[line] .. ' · ' .. text) or text
    end
  end
  return by_line
end

local function frame_line(f)
  if f.kind == 'native' then
    local off = tonumber(f.offset) or 0
    return ('  <native> %s%s in %s'):format(
      f['function'] or '??',
      off > 0 and ('+0x%x'):format(off) or '',
      f.file or '??'
    )
  end
  return ('  File "%s", line %d, in %s'):format(f.file or '?', tonumber(f.line) or 0, f['function'] or '?')
end

local function thread_lines(out, th)
  local head = ('Thread %s (ident %s'):format(tostring(th.name or '?'), tostring(th.ident or '?'))
  if type(th.native_id) == 'number' then
    head = ('Thread %s (native %d, ident %s'):format(tostring(th.name or '?'), th.native_id, tostring(th.ident or '?'))
  end
  if th.main == true then
    head = head .. ', main'
  end
  if th.daemon == true then
    head = head .. ', daemon'
  end
  head = head .. ')'
  if th.state_name then
    head = head .. ' ' .. th.state_name
  end
  if th.holds_gil == true then
    head = head .. ' [holds the GIL]'
  end
  local frames = type(th.frames) == 'table' and th.frames or {}
  if #frames == 0 then
    table.insert(out, head)
    table.insert(out, th.python == false and '  (no frames)' or '  (no Python frames: idle, or between calls)')
    return
  end
  table.insert(out, head .. ', most recent call last:')
  for _, f in ipairs(frames) do
    table.insert(out, frame_line(f))
    if f.kind ~= 'native' and type(f.source) == 'string' and f.source ~= '' then
      table.insert(out, '    ' .. f.source)
    end
  end
end

local function process_lines(out, m)
  local threads = type(m.threads) == 'table' and m.threads or {}
  local head = 'Process ' .. tostring(m.pid or '?')
  if m.python_version and m.python_version ~= '' then
    head = head .. ' (Python ' .. m.python_version .. ')'
  end
  head = head .. (': %d thread%s'):format(#threads, #threads == 1 and '' or 's')
  table.insert(out, head)
  for _, th in ipairs(threads) do
    table.insert(out, '')
    thread_lines(out, th)
  end
end

--- The lines of the stack buffer for an fp.stack result: one stack model ({pid, threads}),
--- several ({processes = [...]}, {stacks = [...]} or a list), or text ({text = "..."}).
--- Returns nil when the result holds none of these.
function M.stack_lines(result)
  if type(result) ~= 'table' then
    return nil
  end
  local out = {}
  if type(result.text) == 'string' then
    for line in (result.text .. '\n'):gmatch('(.-)\r?\n') do
      table.insert(out, line)
    end
    return out
  end
  local models = nil
  if type(result.threads) == 'table' then
    models = { result }
  elseif type(result.processes) == 'table' then
    models = result.processes
  elseif type(result.stacks) == 'table' then
    models = result.stacks
  elseif result[1] ~= nil then
    models = result
  end
  if not models then
    return nil
  end
  for i, m in ipairs(models) do
    if i > 1 then
      table.insert(out, '')
    end
    if type(m) == 'table' then
      process_lines(out, m)
    end
  end
  return out
end

--- The file and 1-based line a line of a stack names: `File "x.py", line 3, in f` (as
--- tracebacks write it) or `x.py:3` (as compilers do). nil when it names none.
function M.parse_frame(line)
  if type(line) ~= 'string' then
    return nil
  end
  local file, lnum = line:match('File "([^"]+)", line (%d+)')
  if file then
    return file, tonumber(lnum)
  end
  file, lnum = line:match('([^%s:"\'()]+%.[%w_]+):(%d+)')
  if file then
    return file, tonumber(lnum)
  end
  return nil
end

--- A request's error as the user reads it: fp-lsp's message, then its hint (what to do).
function M.error_text(err)
  if type(err) ~= 'table' then
    return tostring(err)
  end
  local msg = err.message or 'unknown error'
  local hint = type(err.data) == 'table' and err.data.hint or nil
  if type(hint) == 'string' and hint ~= '' then
    msg = msg .. '\n' .. hint
  end
  return msg
end

--- The processes a command spread over several failed in: "process 12: message (hint)".
function M.failures(result)
  local out = {}
  if type(result) ~= 'table' or type(result.failed) ~= 'table' then
    return out
  end
  for _, f in ipairs(result.failed) do
    local text = ('process %s: %s'):format(tostring(f.pid), tostring(f.message or f.code or '?'))
    if type(f.hint) == 'string' and f.hint ~= '' then
      text = text .. ' (' .. f.hint .. ')'
    end
    table.insert(out, text)
  end
  return out
end

--- Whether the server's capabilities list an executeCommand command.
function M.offers(server_capabilities, name)
  local ecp = type(server_capabilities) == 'table' and server_capabilities.executeCommandProvider
  if type(ecp) ~= 'table' or type(ecp.commands) ~= 'table' then
    return false
  end
  for _, c in ipairs(ecp.commands) do
    if c == name then
      return true
    end
  end
  return false
end

--- Whether a capability set written in hex (/proc/PID/status CapEff) holds capability `bit`.
function M.has_cap(hex, bit)
  if type(hex) ~= 'string' or not hex:match('^%x+$') then
    return false
  end
  local digit = #hex - math.floor(bit / 4) -- the hex digit holding the bit, from the left
  if digit < 1 then
    return false
  end
  local v = tonumber(hex:sub(digit, digit), 16)
  return math.floor(v / 2 ^ (bit % 4)) % 2 == 1
end

M.CAP_SYS_PTRACE = 19

--- What ptrace permission means for fp: level ('ok', 'warn' or 'error') and a message.
--- scope: the Yama ptrace_scope (nil when Yama is absent), root: running as uid 0,
--- cap: CAP_SYS_PTRACE in the effective set.
function M.ptrace_verdict(scope, root, cap)
  local privileged = root or cap
  local who = root and 'running as root' or (cap and 'CAP_SYS_PTRACE held' or 'no CAP_SYS_PTRACE')
  if scope == nil then
    return 'ok', 'no Yama ptrace_scope: processes of the same user can be attached to (' .. who .. ')'
  end
  if scope == 0 then
    return 'ok', 'ptrace_scope is 0: processes of the same user can be attached to (' .. who .. ')'
  end
  if scope == 1 then
    if privileged then
      return 'ok', 'ptrace_scope is 1, ' .. who .. ': any process of the user can be attached to'
    end
    return 'warn',
      'ptrace_scope is 1 and no CAP_SYS_PTRACE: only children of Neovim can be attached to. '
        .. 'Allow it with: echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope '
        .. '(or give fp-lsp CAP_SYS_PTRACE: sudo setcap cap_sys_ptrace+ep $(command -v fp-lsp))'
  end
  if scope == 2 then
    if privileged then
      return 'ok', 'ptrace_scope is 2, ' .. who .. ': attaching is allowed'
    end
    return 'error',
      'ptrace_scope is 2: only root or CAP_SYS_PTRACE may attach. '
        .. 'Run Neovim as the process owner with CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep $(command -v fp-lsp)) '
        .. 'or set: echo 1 | sudo tee /proc/sys/kernel/yama/ptrace_scope'
  end
  return 'error', ('ptrace_scope is %d: attaching is disabled until the next reboot'):format(scope)
end

--- What :FpMonitor's arguments ask for: the scope ('function', 'file' or 'off') and whether
--- it is the whole file's ('file', 'file off'); nil and a message when they make no sense.
function M.monitor_scope(arg)
  local words = vim.split(vim.trim(arg or ''), '%s+', { trimempty = true })
  local file, off = false, false
  for _, w in ipairs(words) do
    if w == 'file' and not file then
      file = true
    elseif w == 'off' and not off then
      off = true
    else
      return nil, (":FpMonitor takes 'file' (every function of the file), 'off' (stop), both, or nothing (the function under the cursor), not '%s'"):format(arg)
    end
  end
  return off and 'off' or (file and 'file' or 'function'), file
end

--- A pid from a command argument: a number, or nil and a message.
function M.parse_pid(arg)
  if arg == nil or arg == '' then
    return nil
  end
  local n = tonumber(arg)
  if not n or n ~= math.floor(n) or n < 1 then
    return nil, ("'%s' is not a process id: give a number (or nothing, to pick one)"):format(arg)
  end
  return n
end

return M
