-- The one fp-lsp of this Neovim, started through the built-in LSP client: vim.lsp.start where
-- Neovim has it (0.8+), vim.lsp.start_client and buf_attach_client on 0.7. It attaches the
-- buffers of the configured filetypes, keeps what fp/status last said, and runs fp-lsp's
-- commands (workspace/executeCommand), saying plainly when this fp-lsp lacks one.
local config = require('fp.config')
local util = require('fp.util')

local M = {}

M.opts = config.merge(nil)

local state = {
  id = nil, -- the client's id, while it runs
  ready = false, -- initialize answered
  waiting = {}, -- functions to run once ready
  status = nil, -- the last fp/status
}

local function notify(msg, level)
  vim.schedule(function()
    vim.notify(msg, level or vim.log.levels.INFO, { title = 'fp' })
  end)
end
M.notify = notify

--- The fp-lsp executable: the server_path option, else $FP_LSP, else fp-lsp on PATH.
--- Returns the path, or nil and what to do.
function M.server_path(opts)
  opts = opts or M.opts
  local given = opts.server_path
  if given and given ~= '' then
    local path = vim.fn.expand(given)
    if vim.fn.executable(path) == 1 then
      return path
    end
    return nil, ("server_path '%s' is not an executable: build fp (make build) and point server_path at build/bin/fp-lsp"):format(given)
  end
  local env = vim.env.FP_LSP
  if env and env ~= '' and vim.fn.executable(env) == 1 then
    return env
  end
  local found = vim.fn.exepath('fp-lsp')
  if found ~= '' then
    return found
  end
  return nil, 'fp-lsp is not on PATH: install fp (make install) or set server_path in require("fp").setup{}'
end

-- Neovim 0.11 made the client's functions methods (client:request); before, plain fields.
local methods = vim.fn.has('nvim-0.11') == 1

function M.request(client, method, params, handler, bufnr)
  if methods then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.request_sync(client, method, params, timeout_ms, bufnr)
  if methods then
    return client:request_sync(method, params, timeout_ms, bufnr)
  end
  return client.request_sync(method, params, timeout_ms, bufnr)
end

function M.get()
  return state.id and vim.lsp.get_client_by_id(state.id) or nil
end

function M.status()
  return state.status
end

--- Whether initialize was answered.
function M.status_ready()
  return state.ready
end

local function fp_buffers()
  local out = {}
  local client = M.get()
  if not client then
    return out
  end
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) and vim.lsp.buf_is_attached(b, client.id) then
      table.insert(out, b)
    end
  end
  return out
end
M.buffers = fp_buffers

-- The editor's side of fp-lsp's requests and notifications.
local function handlers()
  local h = {}
  h['fp/status'] = function(_, params)
    state.status = params
    vim.schedule(function()
      pcall(vim.api.nvim_exec_autocmds, 'User', { pattern = 'FpStatus', modeline = false })
      vim.cmd('redrawstatus!')
    end)
  end
  h['workspace/codeLens/refresh'] = function()
    vim.schedule(function()
      for _, b in ipairs(fp_buffers()) do
        require('fp.lenses').refresh(b)
      end
    end)
    return vim.NIL
  end
  if not require('fp.hints').native() then
    h['workspace/inlayHint/refresh'] = function()
      vim.schedule(function()
        for _, b in ipairs(fp_buffers()) do
          require('fp.hints').refresh(b)
        end
      end)
      return vim.NIL
    end
  end
  -- fp-lsp's messages start with "fp: " and say what to do: shown as they are, through
  -- vim.notify (so a notification plugin gets them) at their level.
  local function show_message(_, params)
    local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
    if type(params) == 'table' and type(params.message) == 'string' then
      notify(params.message, levels[params.type] or vim.log.levels.INFO)
    end
    return vim.NIL
  end
  h['window/showMessage'] = show_message
  -- fp-lsp's offers (the flame graph written at a profile's stop): told the same way, never a
  -- blocking prompt (Neovim's own handler waits in inputlist(), which freezes the editor until
  -- answered, and a headless one for ever); the message names the file to open.
  h['window/showMessageRequest'] = show_message
  h['window/showDocument'] = function(_, params)
    return require('fp.stack').show_document(params)
  end
  return h
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.workspace = caps.workspace or {}
  caps.workspace.codeLens = { refreshSupport = true }
  caps.workspace.inlayHint = { refreshSupport = true }
  caps.textDocument = caps.textDocument or {}
  caps.textDocument.inlayHint = caps.textDocument.inlayHint or { dynamicRegistration = false }
  caps.window = caps.window or {}
  caps.window.showDocument = { support = true }
  return caps
end

local function on_attach(client, bufnr)
  require('fp.lenses').attach(client, bufnr)
  require('fp.hints').attach(client, bufnr)
end

local function client_config(exe)
  local opts = M.opts
  return {
    name = 'fp',
    cmd = config.server_cmd(opts, exe),
    root_dir = vim.fn.getcwd(),
    init_options = config.init_options(opts),
    capabilities = capabilities(),
    handlers = handlers(),
    flags = { debounce_text_changes = 150 },
    on_init = function(client)
      state.ready = true
      local waiting = state.waiting
      state.waiting = {}
      for _, fn in ipairs(waiting) do
        vim.schedule(function()
          fn(client)
        end)
      end
    end,
    on_attach = on_attach,
    on_exit = function(code, signal, id)
      if id ~= state.id then
        return
      end
      state.id, state.ready, state.status, state.waiting = nil, false, nil, {}
      vim.schedule(function()
        require('fp.lenses').clear_all(id)
        require('fp.hints').clear_all()
        vim.cmd('redrawstatus!')
      end)
      if code ~= 0 and not state.stopping then
        notify(('fp-lsp exited (code %d, signal %d): see :LspLog; the next fp command starts it again'):format(code, signal or 0), vim.log.levels.WARN)
      end
      state.stopping = false
    end,
  }
end

--- Starts fp-lsp unless it runs, attaching bufnr when given. Returns the client id or nil.
function M.start(bufnr)
  if state.id and M.get() then
    if bufnr and not vim.lsp.buf_is_attached(bufnr, state.id) then
      vim.lsp.buf_attach_client(bufnr, state.id)
    end
    return state.id
  end
  local exe, why = M.server_path()
  if not exe then
    -- Said once for the buffers that open by themselves; every time for a command.
    if not bufnr or not state.told_missing then
      notify('fp: ' .. why, vim.log.levels.ERROR)
    end
    state.told_missing = true
    return nil
  end
  if M.opts.trace_server ~= 'off' then
    vim.lsp.set_log_level('debug')
  end
  local cfg = client_config(exe)
  local id
  if vim.lsp.start and bufnr then
    id = vim.lsp.start(cfg, { bufnr = bufnr })
  elseif vim.lsp.start and vim.fn.has('nvim-0.11') == 1 then
    id = vim.lsp.start(cfg, { attach = false })
  else
    id = vim.lsp.start_client(cfg)
    if id and bufnr then
      vim.lsp.buf_attach_client(bufnr, id)
    end
  end
  if not id then
    notify('fp: cannot start ' .. exe .. ': see :LspLog', vim.log.levels.ERROR)
    return nil
  end
  state.id, state.ready = id, false
  return id
end

--- Runs fn(client) once fp-lsp is up (started when needed).
function M.with_client(fn)
  if not M.start(nil) then
    return
  end
  local client = M.get()
  if state.ready and client then
    fn(client)
  else
    table.insert(state.waiting, fn)
  end
end

function M.stop()
  if state.id then
    state.stopping = true
    vim.lsp.stop_client(state.id)
  end
end

function M.is_fp_filetype(ft)
  for _, f in ipairs(M.opts.filetypes) do
    if f == ft then
      return true
    end
  end
  return false
end

--- Attaches a buffer holding a file of the configured filetypes.
function M.attach_buffer(bufnr)
  if vim.api.nvim_buf_get_option(bufnr, 'buftype') ~= '' then
    return
  end
  if vim.api.nvim_buf_get_name(bufnr) == '' then
    return
  end
  M.start(bufnr)
end

--- Runs an fp-lsp command: on_result(result) on success; errors (and the processes where a
--- command spread over several failed) are told to the user. bufnr: the buffer whose pending
--- edits must reach the server first (every request sends them).
function M.execute(name, arg, on_result, bufnr)
  M.with_client(function(client)
    if not util.offers(client.server_capabilities, name) then
      notify(('fp: this fp-lsp does not offer %s yet (update fp: make build)'):format(name), vim.log.levels.WARN)
      return
    end
    local params = { command = name, arguments = arg ~= nil and { arg } or {} }
    M.request(client, 'workspace/executeCommand', params, function(err, result)
      if err then
        notify(('fp: %s: %s'):format(name, util.error_text(err)), vim.log.levels.ERROR)
        return
      end
      for _, f in ipairs(util.failures(result)) do
        notify(('fp: %s failed in %s'):format(name, f), vim.log.levels.WARN)
      end
      if on_result then
        on_result(result)
      end
    end, bufnr)
  end)
end

--- Sends the options again (after a second setup()).
function M.push_settings()
  local client = M.get()
  if client and state.ready then
    local settings = { settings = { fp = config.init_options(M.opts) } }
    if methods then
      client:notify('workspace/didChangeConfiguration', settings)
    else
      client.notify('workspace/didChangeConfiguration', settings)
    end
  end
end

return M
