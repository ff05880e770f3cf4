-- :checkhealth fp — the fp-lsp binary and its version, whether this user may ptrace (Yama's
-- ptrace_scope, root, CAP_SYS_PTRACE), and the Python processes fp-lsp finds.
local util = require('fp.util')

local M = {}

-- The report functions: vim.health on 0.10+ (start/ok/...), report_* on 0.8-0.9, the
-- `health` module on 0.7.
local function reporter()
  local h = vim.health
  if h and h.start then
    return h
  end
  if h and h.report_start then
    return { start = h.report_start, ok = h.report_ok, warn = h.report_warn, error = h.report_error, info = h.report_info }
  end
  local old = require('health')
  return { start = old.report_start, ok = old.report_ok, warn = old.report_warn, error = old.report_error, info = old.report_info }
end

local function read(path)
  local f = io.open(path, 'r')
  if not f then
    return nil
  end
  local s = f:read('*a')
  f:close()
  return s
end

local function check_server(h)
  h.start('fp: fp-lsp')
  local client = require('fp.client')
  local exe, why = client.server_path()
  if not exe then
    h.error(why)
    return nil
  end
  h.ok('fp-lsp: ' .. exe)
  local out = vim.fn.system({ exe, '--version' })
  if vim.v.shell_error ~= 0 then
    h.error(('%s --version failed (exit %d): %s'):format(exe, vim.v.shell_error, vim.trim(out)))
    return nil
  end
  h.ok('version: ' .. (vim.split(vim.trim(out), '\n')[1] or '?'))
  if vim.fn.has('nvim-0.7') == 1 then
    h.ok(('Neovim %s: %s'):format(tostring(vim.version and (vim.version().major .. '.' .. vim.version().minor .. '.' .. vim.version().patch) or '?'),
      vim.lsp.start and 'vim.lsp.start' or 'vim.lsp.start_client and buf_attach_client'))
  end
  return exe
end

local function check_ptrace(h)
  h.start('fp: ptrace permission')
  local scope = tonumber(read('/proc/sys/kernel/yama/ptrace_scope') or '')
  local status = read('/proc/self/status') or ''
  local cap = util.has_cap(status:match('CapEff:%s*(%x+)'), util.CAP_SYS_PTRACE)
  local root = vim.loop.getuid and vim.loop.getuid() == 0
  local level, msg = util.ptrace_verdict(scope, root, cap)
  h[level](msg)
end

local function check_processes(h)
  h.start('fp: Python processes')
  local c = require('fp.client')
  if not c.start(nil) then
    h.error('fp-lsp could not be started: see :LspLog')
    return
  end
  local started = vim.wait(10000, function()
    return c.get() ~= nil and c.status_ready()
  end, 20)
  local client = c.get()
  if not started or not client then
    h.error('fp-lsp did not answer initialize within 10 s: see :LspLog')
    return
  end
  local resp = c.request_sync(client, 'workspace/executeCommand', { command = 'fp.listProcesses', arguments = {} }, 10000)
  if not resp or resp.err then
    h.error('fp.listProcesses failed: ' .. (resp and util.error_text(resp.err) or 'no answer within 10 s'))
    return
  end
  local procs = resp.result or {}
  if #procs == 0 then
    h.warn('no Python process of this user found (start one, or see the ptrace section above)')
    return
  end
  h.ok(('%d Python process%s found'):format(#procs, #procs == 1 and '' or 'es'))
  for i, p in ipairs(util.sort_processes(procs)) do
    if i > 10 then
      h.info(('... and %d more'):format(#procs - 10))
      break
    end
    h.info(util.process_label(p))
  end
end

function M.check()
  local h = reporter()
  if check_server(h) then
    check_ptrace(h)
    check_processes(h)
  else
    check_ptrace(h)
  end
end

return M
