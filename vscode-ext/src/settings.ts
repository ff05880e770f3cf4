// The extension's settings (the `fp.*` section) and what fp-lsp is started with. Plain Node,
// no `vscode` import: the extension hands in a getter over its WorkspaceConfiguration.

export interface WatchDefaults {
  /** What each watched call shows (the terminal's `watch --expr`); "" = args, return value, cost. */
  expr: string;
  /** Value tree depth, 1-4 (the terminal's `-x`). */
  depth: number;
  /** Calls shown before the watch stops (the terminal's `-n`). */
  limit: number;
}

export interface FpSettings {
  serverPath: string;
  reloadOnSave: boolean;
  /** Percent of the samples from which a line counts as hot. */
  hotLineThreshold: number;
  /** Shortest interval between two live lens refreshes, in milliseconds. */
  lensRefreshRate: number;
  /** How often a monitored function's figures are reported by the process, in seconds. */
  monitorInterval: number;
  watch: WatchDefaults;
}

/** The defaults, the same as package.json's `contributes.configuration` (a unit test checks it). */
export const DEFAULT_SETTINGS: FpSettings = {
  serverPath: '',
  reloadOnSave: false,
  hotLineThreshold: 1,
  lensRefreshRate: 500,
  monitorInterval: 1,
  watch: { expr: '', depth: 1, limit: 100 },
};

/** Reads one key of the `fp` section ("serverPath", "watch.depth"); undefined when unset. */
export type SettingGetter = (key: string) => unknown;

/**
 * Reads the settings, replacing any value of the wrong type or out of range by its default,
 * so a hand-edited settings.json never sends the server something it must reject.
 */
export function readSettings(get: SettingGetter): FpSettings {
  const d = DEFAULT_SETTINGS;
  return {
    serverPath: str(get('serverPath'), d.serverPath),
    reloadOnSave: bool(get('reloadOnSave'), d.reloadOnSave),
    hotLineThreshold: num(get('hotLineThreshold'), d.hotLineThreshold, 0, 100, false),
    lensRefreshRate: num(get('lensRefreshRate'), d.lensRefreshRate, 500, 60_000, true),
    monitorInterval: num(get('monitorInterval'), d.monitorInterval, 0.1, 60, false),
    watch: {
      expr: str(get('watch.expr'), d.watch.expr),
      depth: num(get('watch.depth'), d.watch.depth, 1, 4, true),
      limit: num(get('watch.limit'), d.watch.limit, 1, 1_000_000, true),
    },
  };
}

/** fp-lsp's own watch expression (server/lsp/lifecycle.c; a unit test checks it). */
export const SERVER_WATCH_EXPR = 'args, kwargs, return_obj';

/**
 * What `initialize` carries as initializationOptions, and workspace/didChangeConfiguration as
 * `{fp: ...}`: every setting the server acts on, under fp-lsp's names (server/lsp/lifecycle.c).
 * The server path is the client's business and is left out. An empty watch expression is sent
 * as the server's default: the server keeps its last expression when given an empty one, so
 * clearing the setting would otherwise not take effect until a restart.
 */
export function initializationOptions(s: FpSettings): Record<string, unknown> {
  return {
    reloadOnSave: s.reloadOnSave,
    hotThreshold: s.hotLineThreshold,
    lensRefreshMs: s.lensRefreshRate,
    monitorInterval: s.monitorInterval,
    watch: {
      expr: s.watch.expr.trim() === '' ? SERVER_WATCH_EXPR : s.watch.expr,
      depth: s.watch.depth,
      limit: s.watch.limit,
    },
  };
}

/** The shape of vscode-languageclient's `Executable` (stdio transport: no `transport` field). */
export interface ServerExecutable {
  command: string;
  args: string[];
  options: { cwd?: string; env: Record<string, string | undefined> };
}

/** How to start fp-lsp: the resolved binary over stdio, in the workspace folder when there is one. */
export function serverExecutable(
  serverPath: string,
  workspaceDir: string | undefined,
  env: Record<string, string | undefined>,
): ServerExecutable {
  const options: ServerExecutable['options'] = { env: { ...env } };
  if (workspaceDir !== undefined) {
    options.cwd = workspaceDir;
  }
  return { command: serverPath, args: [], options };
}

/** True when a configuration change means the server must be started again. */
export function needsRestart(changed: (section: string) => boolean): boolean {
  return changed('fp.serverPath');
}

/** True when a configuration change must reach the running server (didChangeConfiguration). */
export function needsUpdate(changed: (section: string) => boolean): boolean {
  return ['reloadOnSave', 'hotLineThreshold', 'lensRefreshRate', 'monitorInterval', 'watch'].some((k) =>
    changed(`fp.${k}`),
  );
}

function str(v: unknown, dflt: string): string {
  return typeof v === 'string' ? v : dflt;
}

function bool(v: unknown, dflt: boolean): boolean {
  return typeof v === 'boolean' ? v : dflt;
}

function num(v: unknown, dflt: number, min: number, max: number, integer: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    return dflt;
  }
  return integer ? Math.round(v) : v;
}
