-- fp's commands, <Plug> mappings and highlights, defined at startup; the work is done lazily
-- in lua/fp/. No key is mapped for you: map the <Plug>(fp-...) names you want.
if vim.g.loaded_fp then
  return
end
vim.g.loaded_fp = true

if vim.fn.has('nvim-0.7') == 0 then
  vim.api.nvim_echo({ { 'fp needs Neovim 0.7 or newer', 'WarningMsg' } }, true, {})
  return
end

local function fp()
  return require('fp')
end

local commands = {
  { 'FpAttach', function(o) fp().attach(o.args) end, { nargs = '?', desc = 'attach to a Python process (a picker without a pid)' } },
  { 'FpDetach', function(o) fp().detach(o.args) end, { nargs = '?', desc = 'detach from a process, or all' } },
  { 'FpWatch', function(o) fp().watch(o.args) end, { nargs = '?', desc = 'watch the calls of the function under the cursor' } },
  { 'FpTrace', function() fp().trace() end, { nargs = 0, desc = 'trace the function under the cursor' } },
  { 'FpMonitor', function(o) fp().monitor(o.args) end, {
    nargs = '*',
    complete = function() return { 'file', 'off' } end,
    desc = 'live figures of the function under the cursor (file: of the whole file; off: stop)',
  } },
  { 'FpProfile', function(o) fp().profile(o.args, o.bang) end, { nargs = '?', bang = true, desc = 'hot lines from the sampler (! stops)' } },
  { 'FpStop', function() fp().stop() end, { nargs = 0, desc = 'stop what fp runs on the function under the cursor' } },
  { 'FpReload', function() fp().reload() end, { nargs = 0, desc = "reload the buffer's version of the function under the cursor" } },
  { 'FpStack', function(o) fp().stack(o.args) end, { nargs = '?', desc = "every thread's stack in a scratch buffer" } },
}
for _, c in ipairs(commands) do
  vim.api.nvim_create_user_command(c[1], c[2], c[3])
end

local plugs = {
  ['fp-attach'] = function() fp().attach() end,
  ['fp-detach'] = function() fp().detach() end,
  ['fp-watch'] = function() fp().watch() end,
  ['fp-trace'] = function() fp().trace() end,
  ['fp-monitor'] = function() fp().monitor() end,
  ['fp-monitor-file'] = function() fp().monitor('file') end,
  ['fp-profile'] = function() fp().profile() end,
  ['fp-profile-stop'] = function() fp().profile(nil, true) end,
  ['fp-stop'] = function() fp().stop() end,
  ['fp-reload'] = function() fp().reload() end,
  ['fp-stack'] = function() fp().stack() end,
  ['fp-lens'] = function() vim.lsp.codelens.run() end,
}
for name, fn in pairs(plugs) do
  vim.keymap.set('n', '<Plug>(' .. name .. ')', fn, { desc = 'fp: ' .. name:gsub('^fp%-', '') })
end

local function highlights()
  vim.api.nvim_set_hl(0, 'FpCost', { link = 'Comment', default = true })
  vim.api.nvim_set_hl(0, 'FpHot', { link = 'WarningMsg', default = true })
end
highlights()

local group = vim.api.nvim_create_augroup('fp', { clear = true })
vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = highlights })
vim.api.nvim_create_autocmd('FileType', {
  group = group,
  callback = function(args)
    local client = require('fp.client')
    if client.opts.autostart and client.is_fp_filetype(args.match) then
      client.attach_buffer(args.buf)
    end
  end,
})
