-- Lenses of fp-lsp in a buffer: asked for (textDocument/codeLens), resolved (codeLens/resolve
-- fills in the figures of that moment), then split: a monitored function's live figures
-- ("300 calls · 38/s · p50 1.2 ms ...") are drawn as virtual text at the end of its `def`
-- line, the actions through vim.lsp.codelens (so vim.lsp.codelens.run() runs them). Refreshed
-- when fp-lsp asks (workspace/codeLens/refresh), on entering the buffer and after edits.
local util = require('fp.util')

local M = {}

M.ns = vim.api.nvim_create_namespace('fp_costs')

local busy = {} -- bufnr -> true while a refresh runs
local again = {} -- bufnr -> true when one more was asked for meanwhile
local timers = {}

local function client_of(bufnr)
  local c = require('fp.client')
  local client = c.get()
  if client and vim.api.nvim_buf_is_valid(bufnr) and vim.lsp.buf_is_attached(bufnr, client.id) then
    return client
  end
end

local function draw_costs(bufnr, figures)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  if not require('fp.client').opts.virtual_text then
    return
  end
  local count = vim.api.nvim_buf_line_count(bufnr)
  for _, lens in ipairs(figures) do
    local line = lens.range.start.line
    if line >= 0 and line < count then
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, line, 0, {
        virt_text = { { '  ' .. lens.command.title, 'FpCost' } },
        virt_text_pos = 'eol',
        hl_mode = 'combine',
      })
    end
  end
end

local function show(client, bufnr, lenses)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  local figures, others = util.split_lenses(lenses)
  draw_costs(bufnr, figures)
  if require('fp.client').opts.lenses then
    vim.lsp.codelens.save(others, bufnr, client.id)
    vim.lsp.codelens.display(others, bufnr, client.id)
  end
end

local function finish(bufnr)
  busy[bufnr] = nil
  if again[bufnr] then
    again[bufnr] = nil
    M.refresh(bufnr)
  end
end

--- Asks for the lenses of bufnr again (one request at a time per buffer).
function M.refresh(bufnr)
  local client = client_of(bufnr)
  if not client then
    return
  end
  if busy[bufnr] then
    again[bufnr] = true
    return
  end
  busy[bufnr] = true
  local c = require('fp.client')
  local params = { textDocument = { uri = vim.uri_from_bufnr(bufnr) } }
  local ok = c.request(client, 'textDocument/codeLens', params, function(err, lenses)
    if err or type(lenses) ~= 'table' then
      finish(bufnr)
      return
    end
    local pending = 0
    local function done()
      pending = pending - 1
      if pending == 0 then
        show(client, bufnr, lenses)
        finish(bufnr)
      end
    end
    pending = 1
    for _, lens in ipairs(lenses) do
      if not lens.command then
        pending = pending + 1
        c.request(client, 'codeLens/resolve', lens, function(rerr, resolved)
          if not rerr and type(resolved) == 'table' and resolved.command then
            lens.command = resolved.command
          end
          done()
        end, bufnr)
      end
    end
    done()
  end, bufnr)
  if not ok then
    busy[bufnr] = nil
  end
end

--- A refresh a moment after the last edit (typing goes on).
function M.refresh_soon(bufnr, delay)
  local t = timers[bufnr]
  if not t then
    t = vim.loop.new_timer()
    timers[bufnr] = t
  end
  t:stop()
  t:start(delay or 300, 0, vim.schedule_wrap(function()
    M.refresh(bufnr)
  end))
end

function M.attach(_, bufnr)
  local group = vim.api.nvim_create_augroup('fp_lenses_' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.refresh(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'TextChanged' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.refresh_soon(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufWipeout' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if timers[bufnr] then
        timers[bufnr]:stop()
        timers[bufnr]:close()
        timers[bufnr] = nil
      end
      busy[bufnr], again[bufnr] = nil, nil
    end,
  })
  M.refresh(bufnr)
end

--- The figures shown in bufnr: { {line = 0-based, text = "..."} }, for the statusline and tests.
function M.costs(bufnr)
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, M.ns, 0, -1, { details = true })) do
    local chunks = m[4] and m[4].virt_text or {}
    local text = {}
    for _, ch in ipairs(chunks) do
      table.insert(text, ch[1])
    end
    table.insert(out, { line = m[2], text = vim.trim(table.concat(text)) })
  end
  return out
end

--- Everything drawn for client id (gone) goes, with what waited for its answers.
function M.clear_all(id)
  busy, again = {}, {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) then
      vim.api.nvim_buf_clear_namespace(b, M.ns, 0, -1)
      if id then
        pcall(vim.lsp.codelens.save, {}, b, id)
        pcall(vim.lsp.codelens.display, {}, b, id)
      end
    end
  end
end

return M
