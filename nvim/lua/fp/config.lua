-- The plugin's options: the defaults (the same as the VS Code extension's `fp.*` settings),
-- checking what a user passes to setup(), and what fp-lsp is started with. Pure Lua: no
-- editor state, so the unit tests run it directly.
local M = {}

M.defaults = {
  -- Path of the fp-lsp executable; nil or '': `fp-lsp` on PATH ($FP_LSP first when set).
  server_path = nil,
  -- Reload the changed functions of a saved file into the attached processes.
  reload_on_save = false,
  -- Share of the samples (percent) from which a line is shown as hot.
  hot_line_threshold = 5,
  -- Shortest interval (ms) between two refreshes of the live lenses.
  lens_refresh_rate = 500,
  -- What :FpWatch shows of each call ('' = arguments, return value and cost), how deep values
  -- are expanded (1-4) and how many calls are shown before the watch stops.
  watch = { expr = '', depth = 1, limit = 10 },
  -- 'off', 'messages' (LSP messages in the LSP log) or 'verbose' (also fp-lsp's own log).
  trace_server = 'off',
  -- Neovim's own: start fp-lsp for these filetypes as their buffers open.
  filetypes = { 'python' },
  autostart = true,
  -- Attach to the children of a process too (pre-fork servers: gunicorn, uwsgi).
  attach_children = false,
  -- Show the lenses (actions, "changed since loaded") through vim.lsp.codelens.
  lenses = true,
  -- Live costs at the end of a function's line and hot lines as virtual text.
  virtual_text = true,
}

-- nil when ok, else what is expected.
local function need(ok, what)
  if not ok then
    return what
  end
end

local function is_int(v)
  return type(v) == 'number' and v == math.floor(v)
end

-- Each check returns nil when v is acceptable, else what is expected.
local checks = {
  server_path = function(v)
    return need((v == nil or type(v) == 'string'), 'a path (string)')
  end,
  reload_on_save = function(v)
    return need(type(v) == 'boolean', 'true or false')
  end,
  hot_line_threshold = function(v)
    return need((type(v) == 'number' and v >= 0 and v <= 100), 'a number from 0 to 100')
  end,
  lens_refresh_rate = function(v)
    return need((is_int(v) and v >= 100 and v <= 3600000), 'whole milliseconds, 100 or more')
  end,
  trace_server = function(v)
    return need((v == 'off' or v == 'messages' or v == 'verbose'), "'off', 'messages' or 'verbose'")
  end,
  filetypes = function(v)
    if type(v) ~= 'table' then
      return 'a list of filetypes'
    end
    for _, ft in ipairs(v) do
      if type(ft) ~= 'string' then
        return 'a list of filetypes (strings)'
      end
    end
  end,
  autostart = function(v)
    return need(type(v) == 'boolean', 'true or false')
  end,
  attach_children = function(v)
    return need(type(v) == 'boolean', 'true or false')
  end,
  lenses = function(v)
    return need(type(v) == 'boolean', 'true or false')
  end,
  virtual_text = function(v)
    return need(type(v) == 'boolean', 'true or false')
  end,
}

local watch_checks = {
  expr = function(v)
    return need(type(v) == 'string', 'an expression (string)')
  end,
  depth = function(v)
    return need((is_int(v) and v >= 1 and v <= 4), 'a whole number from 1 to 4')
  end,
  limit = function(v)
    return need((is_int(v) and v >= 1 and v <= 1000000), 'a whole number from 1 to 1000000')
  end,
}

local function show(v)
  if type(v) == 'string' then
    return ('%q'):format(v)
  end
  return tostring(v)
end

local function copy(t)
  if type(t) ~= 'table' then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    c[k] = copy(v)
  end
  return c
end

--- The options with `user` over the defaults. Returns the options and a list of problems
--- (each names the option, what it got and what it takes); a bad value keeps its default.
function M.merge(user)
  local opts = copy(M.defaults)
  local problems = {}
  if user == nil then
    return opts, problems
  end
  if type(user) ~= 'table' then
    return opts, { 'setup() takes a table of options, not ' .. type(user) }
  end
  for k, v in pairs(user) do
    if k == 'watch' then
      if type(v) ~= 'table' then
        table.insert(problems, 'fp option watch: expected a table {expr, depth, limit}, got ' .. type(v))
      else
        for wk, wv in pairs(v) do
          local check = watch_checks[wk]
          local bad = check and check(wv)
          if not check then
            table.insert(problems, ('fp option watch.%s: unknown (expr, depth, limit)'):format(tostring(wk)))
          elseif bad then
            table.insert(problems, ('fp option watch.%s: expected %s, got %s'):format(wk, bad, show(wv)))
          else
            opts.watch[wk] = wv
          end
        end
      end
    elseif checks[k] then
      local bad = checks[k](v)
      if bad then
        table.insert(problems, ('fp option %s: expected %s, got %s'):format(k, bad, show(v)))
      else
        opts[k] = copy(v)
      end
    else
      table.insert(problems, ('fp option %s: unknown (see :help fp-options)'):format(tostring(k)))
    end
  end
  return opts, problems
end

--- What `initialize` carries as initializationOptions. fp-lsp reads `hotThreshold` and
--- `lensRefreshMs`; the VS Code extension's names for them go too, so the same settings reach
--- a server that reads either.
function M.init_options(opts)
  return {
    reloadOnSave = opts.reload_on_save,
    hotThreshold = opts.hot_line_threshold,
    hotLineThreshold = opts.hot_line_threshold,
    lensRefreshMs = opts.lens_refresh_rate,
    lensRefreshRate = opts.lens_refresh_rate,
    watch = { expr = opts.watch.expr, depth = opts.watch.depth, limit = opts.watch.limit },
  }
end

--- The command line of fp-lsp for a resolved executable.
function M.server_cmd(opts, exe)
  local cmd = { exe }
  if opts.trace_server == 'verbose' then
    table.insert(cmd, '--debug')
  end
  return cmd
end

return M
