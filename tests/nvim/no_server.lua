-- Without fp-lsp: opening Python files says once what to do, a command says it again,
-- :checkhealth fp reports the error with the fix. Exits 1 with what it saw when not so.
local msgs = {}
vim.notify = function(m)
  table.insert(msgs, m)
end
local missing = vim.env.FP_TEST_MISSING
require('fp').setup({ server_path = missing })
local repo = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')
vim.cmd('edit ' .. repo .. '/tests/targets/lsp_service.py')
vim.cmd('edit ' .. repo .. '/tests/targets/fptarget.py')
vim.cmd('FpAttach 1')
local want = ("fp: server_path '%s' is not an executable: build fp (make build) and point server_path at build/bin/fp-lsp"):format(missing)
vim.wait(5000, function()
  return #msgs >= 2
end, 20)
vim.cmd('checkhealth fp')
local health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
local ok = #msgs == 2 and msgs[1] == want and msgs[2] == want
  and health:find('ERROR:? server_path', 1) ~= nil
  and require('fp.client').get() == nil
io.stdout:write(vim.inspect(msgs) .. '\n' .. health .. '\n')
vim.cmd(ok and 'qall!' or 'cquit 1')
