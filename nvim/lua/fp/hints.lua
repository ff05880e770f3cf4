-- Inlay hints of fp-lsp (hot lines while profiling, trace costs per line): Neovim's native
-- inlay hints where it has them (0.10+), else drawn here as virtual text at the end of their
-- lines, asked for again when fp-lsp says they changed (workspace/inlayHint/refresh).
local util = require('fp.util')

local M = {}

M.ns = vim.api.nvim_create_namespace('fp_hints')

local busy, again = {}, {}

function M.native()
  return type(vim.lsp.inlay_hint) == 'table' and type(vim.lsp.inlay_hint.enable) == 'function'
end

local function enable_native(bufnr)
  -- 0.10's final form is enable(true, {bufnr}); its pre-releases took (bufnr, true).
  if not pcall(vim.lsp.inlay_hint.enable, true, { bufnr = bufnr }) then
    pcall(vim.lsp.inlay_hint.enable, bufnr, true)
  end
end

local function draw(bufnr, hints)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  if not require('fp.client').opts.virtual_text then
    return
  end
  local count = vim.api.nvim_buf_line_count(bufnr)
  for line, text in pairs(util.hints_by_line(hints)) do
    if line >= 0 and line < count then
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, line, 0, {
        virt_text = { { '  ' .. text, 'FpHot' } },
        virt_text_pos = 'eol',
        hl_mode = 'combine',
      })
    end
  end
end

function M.refresh(bufnr)
  if M.native() then
    return -- Neovim asks and draws itself
  end
  local c = require('fp.client')
  local client = c.get()
  if not client or not vim.api.nvim_buf_is_valid(bufnr) or not vim.lsp.buf_is_attached(bufnr, client.id) then
    return
  end
  if busy[bufnr] then
    again[bufnr] = true
    return
  end
  busy[bufnr] = true
  local last = vim.api.nvim_buf_line_count(bufnr)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = last, character = 0 } },
  }
  c.request(client, 'textDocument/inlayHint', params, function(err, hints)
    busy[bufnr] = nil
    if not err and vim.api.nvim_buf_is_valid(bufnr) then
      draw(bufnr, type(hints) == 'table' and hints or {})
    end
    if again[bufnr] then
      again[bufnr] = nil
      M.refresh(bufnr)
    end
  end, bufnr)
end

function M.attach(_, bufnr)
  if M.native() then
    if require('fp.client').opts.virtual_text then
      enable_native(bufnr)
    end
    return
  end
  local group = vim.api.nvim_create_augroup('fp_hints_' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.refresh(bufnr)
    end,
  })
  M.refresh(bufnr)
end

--- The hints drawn in bufnr (where drawn by the plugin): { {line, text} }.
function M.shown(bufnr)
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, M.ns, 0, -1, { details = true })) do
    local chunks = m[4] and m[4].virt_text or {}
    table.insert(out, { line = m[2], text = vim.trim(chunks[1] and chunks[1][1] or '') })
  end
  return out
end

function M.clear_all()
  busy, again = {}, {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) then
      vim.api.nvim_buf_clear_namespace(b, M.ns, 0, -1)
    end
  end
end

return M
