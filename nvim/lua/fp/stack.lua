-- :FpStack's scratch buffer: every thread's stack of the attached processes, one frame a line
-- as tracebacks write them, with gf and <CR> jumping to the frame under the cursor. Also the
-- documents fp-lsp asks the editor to show (window/showDocument): a stack document goes into
-- the same buffer, a file opens in a window, anything external is handed to the system.
local util = require('fp.util')

local M = {}

local NAME = 'fp://stacks'
local expecting = 0 -- fp.stack requests whose document fp-lsp may show

local function scratch()
  local buf = vim.fn.bufnr(NAME)
  if buf == -1 or not vim.api.nvim_buf_is_valid(buf) then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, NAME)
    vim.api.nvim_buf_set_option(buf, 'buftype', 'nofile')
    vim.api.nvim_buf_set_option(buf, 'bufhidden', 'hide')
    vim.api.nvim_buf_set_option(buf, 'swapfile', false)
    vim.api.nvim_buf_set_option(buf, 'filetype', 'fpstack')
    for _, key in ipairs({ 'gf', '<CR>' }) do
      vim.keymap.set('n', key, M.jump, { buffer = buf, desc = 'fp: go to the frame under the cursor' })
    end
  end
  return buf
end

--- Fills the stack buffer with lines and shows it (a split unless a window shows it already).
function M.open(lines)
  local buf = scratch()
  vim.api.nvim_buf_set_option(buf, 'modifiable', true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, 'modifiable', false)
  local win = vim.fn.bufwinid(buf)
  if win == -1 then
    vim.cmd('botright split')
    vim.api.nvim_win_set_buf(0, buf)
  else
    vim.api.nvim_set_current_win(win)
  end
  return buf
end

--- The result of fp.stack, shown. A result naming a document (uri or path) shows its text.
-- The stacks document fp-lsp wrote for the last fp.stack answered (its answer's "document"):
-- its window/showDocument may come before the answer (it opens the stacks buffer then) or after
-- it (the buffer is shown already: nothing to do).
local last_document

function M.show(result)
  expecting = math.max(expecting - 1, 0)
  if type(result) == 'table' and type(result.document) == 'string' and result.document ~= '' then
    last_document = vim.uri_to_fname(result.document)
  end
  local lines = util.stack_lines(result)
  if not lines and type(result) == 'table' and (result.uri or result.path) then
    local path = result.path or vim.uri_to_fname(result.uri)
    if vim.fn.filereadable(path) == 1 then
      lines = vim.fn.readfile(path)
    end
  end
  if not lines then
    require('fp.client').notify('fp: fp.stack answered nothing to show: ' .. vim.inspect(result), vim.log.levels.WARN)
    return
  end
  return M.open(lines)
end

function M.expect()
  expecting = expecting + 1
end

local function loaded(path)
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b) == path then
      return b
    end
  end
end

--- Shows file in the current window: its buffer when loaded (edits kept), else a new one, in
--- a split when the window's buffer has unsaved edits it cannot hide.
function M.edit(file)
  local path = vim.fn.fnamemodify(file, ':p')
  local b = loaded(path)
  if b then
    vim.api.nvim_win_set_buf(0, b)
    return
  end
  if vim.bo.modified and not vim.o.hidden then
    vim.cmd('split')
  end
  vim.cmd('edit ' .. vim.fn.fnameescape(path))
end

--- Jumps to the frame on the cursor's line, in the window the stacks were opened from.
function M.jump()
  local file, lnum = util.parse_frame(vim.api.nvim_get_current_line())
  if not file then
    vim.api.nvim_echo({ { 'fp: no frame on this line (put the cursor on a File "...", line N one)', 'WarningMsg' } }, false, {})
    return
  end
  if vim.fn.filereadable(file) == 0 then
    vim.api.nvim_echo({ { ('fp: %s is not readable here'):format(file), 'WarningMsg' } }, false, {})
    return
  end
  local here = vim.api.nvim_get_current_win()
  vim.cmd('wincmd p')
  if vim.api.nvim_get_current_win() == here then
    vim.cmd('aboveleft split')
  end
  M.edit(file)
  local last = vim.api.nvim_buf_line_count(0)
  vim.api.nvim_win_set_cursor(0, { math.min(math.max(lnum, 1), last), 0 })
end

--- window/showDocument from fp-lsp.
function M.show_document(params)
  local uri = type(params) == 'table' and params.uri
  if type(uri) ~= 'string' then
    return { success = false }
  end
  if params.external then
    if vim.ui and vim.ui.open then
      vim.schedule(function()
        vim.ui.open(uri)
      end)
    else
      require('fp.client').notify('fp: open ' .. uri)
    end
    return { success = true }
  end
  local path = vim.uri_to_fname(uri)
  vim.schedule(function()
    if path == last_document then
      return -- the answer came first and showed it already
    end
    if expecting > 0 and vim.fn.filereadable(path) == 1 then
      M.open(vim.fn.readfile(path))
      return
    end
    M.edit(path)
    local sel = params.selection
    if type(sel) == 'table' and sel.start then
      pcall(vim.api.nvim_win_set_cursor, 0, { sel.start.line + 1, sel.start.character })
    end
  end)
  return { success = true }
end

return M
