-- fp for Neovim: attach to a running Python process and watch, monitor, trace, profile and
-- reload its functions from the source, through fp-lsp. This module is the public face:
-- setup(), the actions behind the :Fp commands and <Plug> mappings, and the statusline part.
local config = require('fp.config')
local client = require('fp.client')
local util = require('fp.util')

local M = {}

--- Options (see :help fp-options). Can be called again; fp-lsp gets the new settings.
function M.setup(user)
  local opts, problems = config.merge(user)
  client.opts = opts
  for _, p in ipairs(problems) do
    client.notify(p .. ' (the default is used)', vim.log.levels.WARN)
  end
  client.push_settings()
  if opts.autostart then
    M.attach_open_buffers()
  end
  return opts
end

function M.attach_open_buffers()
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) and client.is_fp_filetype(vim.api.nvim_buf_get_option(b, 'filetype')) then
      client.attach_buffer(b)
    end
  end
end

local function refresh_all()
  for _, b in ipairs(client.buffers()) do
    require('fp.lenses').refresh(b)
    require('fp.hints').refresh(b)
  end
end

--- {uri, line} of the cursor in the current buffer (attached first), or nil and why.
local function here()
  local bufnr = vim.api.nvim_get_current_buf()
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' or vim.api.nvim_buf_get_option(bufnr, 'buftype') ~= '' then
    return nil, 'put the cursor in a function of a Python file first'
  end
  if not client.start(bufnr) then
    return nil, 'fp-lsp is not running (see :checkhealth fp)'
  end
  local row = vim.api.nvim_win_get_cursor(0)[1]
  return { uri = vim.uri_from_bufnr(bufnr), line = row - 1 }, bufnr
end

local function on_function(command, extra, on_result)
  local arg, bufnr = here()
  if not arg then
    client.notify(('fp: %s: %s'):format(command, bufnr), vim.log.levels.ERROR)
    return
  end
  for k, v in pairs(extra or {}) do
    arg[k] = v
  end
  client.execute(command, arg, function(result)
    if on_result then
      on_result(result, bufnr)
    end
    refresh_all()
  end, bufnr)
end

local function pids_text(list)
  local out = {}
  for _, p in ipairs(list or {}) do
    table.insert(out, tostring(type(p) == 'table' and p.pid or p))
  end
  return table.concat(out, ', ')
end

--- :FpAttach [pid]. Without a pid, a picker of the Python processes fp-lsp finds.
function M.attach(pid)
  local n, why = util.parse_pid(pid)
  if why then
    client.notify('fp: ' .. why, vim.log.levels.ERROR)
    return
  end
  local function go(which)
    client.execute('fp.attach', { pid = which, children = client.opts.attach_children }, function(r)
      client.notify(('fp: attached to %s'):format(pids_text(r and r.attached or { which })))
      M.attach_open_buffers()
      refresh_all()
    end)
  end
  if n then
    go(n)
    return
  end
  client.execute('fp.listProcesses', nil, function(procs)
    if type(procs) ~= 'table' or #procs == 0 then
      client.notify('fp: no Python process found that this user can attach to (see :checkhealth fp)', vim.log.levels.WARN)
      return
    end
    procs = util.sort_processes(procs)
    vim.ui.select(procs, { prompt = 'Attach fp to', format_item = util.process_label }, function(p)
      if p then
        go(p.pid)
      end
    end)
  end)
end

--- :FpDetach [pid]: that process (and its children), or every one.
function M.detach(pid)
  local n, why = util.parse_pid(pid)
  if why then
    client.notify('fp: ' .. why, vim.log.levels.ERROR)
    return
  end
  client.execute('fp.detach', n and { pid = n } or vim.empty_dict(), function(r)
    local gone = r and r.detached or {}
    client.notify(#gone > 0 and ('fp: detached from %s'):format(pids_text(gone)) or 'fp: nothing was attached')
    refresh_all()
  end)
end

--- :FpWatch [expr]: the calls of the function under the cursor, as diagnostics on its line.
function M.watch(expr)
  local extra = {}
  local w = client.opts.watch
  if expr and expr ~= '' then
    extra.expr = expr
  elseif w.expr ~= '' then
    extra.expr = w.expr
  end
  extra.depth, extra.limit = w.depth, w.limit
  on_function('fp.watch', extra, function(r)
    client.notify(('fp: watching %s in %s'):format(r.function_name or r['function'] or '?', pids_text(r.pids)))
  end)
end

--- :FpTrace: the next calls of the function under the cursor, costs per line.
function M.trace()
  on_function('fp.trace', nil, function(r)
    client.notify(('fp: tracing %s'):format(type(r) == 'table' and r['function'] or ''))
  end)
end

--- :FpMonitor [file] [off]: live figures of the function under the cursor (or of every
--- function of the file); off stops them.
function M.monitor(arg)
  local scope, whole = util.monitor_scope(arg)
  if not scope then
    client.notify('fp: ' .. whole, vim.log.levels.ERROR)
    return
  end
  if whole then
    local bufnr = vim.api.nvim_get_current_buf()
    if vim.api.nvim_buf_get_name(bufnr) == '' or not client.start(bufnr) then
      client.notify('fp: :FpMonitor file: open a Python file first', vim.log.levels.ERROR)
      return
    end
    client.execute('fp.monitor', { uri = vim.uri_from_bufnr(bufnr), scope = scope }, function(r)
      if scope == 'off' then
        client.notify(('fp: monitor off for %d functions'):format(r and r.stopped or 0))
      else
        client.notify(('fp: monitoring %d functions'):format(r and r.functions and #r.functions or 0))
      end
      refresh_all()
    end, bufnr)
    return
  end
  on_function('fp.monitor', { scope = scope }, function(r)
    if scope == 'off' then
      client.notify('fp: monitor off')
    else
      client.notify(('fp: monitoring %s'):format(table.concat(r.functions or {}, ', ')))
    end
  end)
end

--- :FpProfile [pid] (hot lines from the sampler); :FpProfile! or :FpProfile stop ends it.
function M.profile(arg, stop)
  if arg == 'stop' then
    stop, arg = true, nil
  end
  local n, why = util.parse_pid(arg)
  if why then
    client.notify('fp: ' .. why, vim.log.levels.ERROR)
    return
  end
  local command = stop and 'fp.profile.stop' or 'fp.profile'
  client.execute(command, n and { pid = n } or vim.empty_dict(), function()
    client.notify(stop and 'fp: profile stopped' or 'fp: profiling (hot lines appear as they are found)')
    refresh_all()
  end)
end

--- :FpStop: everything fp runs on the function under the cursor (watch, monitor).
function M.stop()
  on_function('fp.stop', nil, function(r)
    client.notify(('fp: stopped %s'):format(r and r['function'] or ''))
  end)
end

--- :FpReload: the buffer's version of the function under the cursor, unsaved edits included
--- (every request to fp-lsp first sends the edits it has not seen). fp-lsp says what took
--- effect (window/showMessage); a refusal is an error diagnostic on its line.
function M.reload()
  on_function('fp.reload', nil, nil)
end

local function attached_pids()
  local s = client.status()
  local out = {}
  for _, p in ipairs(s and s.processes or {}) do
    table.insert(out, p)
  end
  return out
end

--- :FpStack [pid]: every thread's stack, in a scratch buffer (gf / <CR> go to a frame).
function M.stack(pid)
  local n, why = util.parse_pid(pid)
  if why then
    client.notify('fp: ' .. why, vim.log.levels.ERROR)
    return
  end
  local function go(which)
    require('fp.stack').expect()
    client.execute('fp.stack', which and { pid = which } or vim.empty_dict(), function(r)
      require('fp.stack').show(r)
    end)
  end
  if n then
    return go(n)
  end
  local procs = attached_pids()
  if #procs <= 1 then
    return go(procs[1] and procs[1].pid)
  end
  vim.ui.select(procs, { prompt = 'Stacks of', format_item = util.process_label }, function(p)
    if p then
      go(p.pid)
    end
  end)
end

--- For 'statusline': "fp 1234 · watching 1 · monitoring 2", or "" when nothing is attached.
function M.statusline()
  return util.status_text(client.status())
end

--- The last fp/status of fp-lsp (processes, watching, monitoring, profiling), or nil.
function M.status()
  return client.status()
end

return M
