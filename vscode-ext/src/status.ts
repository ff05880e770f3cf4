// The status bar item: what fp-lsp's fp/status notification (and fp.status) says is attached
// and active, and the actions offered when it is clicked. Plain Node, no `vscode` import.

export interface StatusProcess {
  pid: number;
  /** The pid it was attached as a child of ("attach with child processes"). */
  parent: number | undefined;
  python: string;
  cmdline: string;
}

export interface ServerStatus {
  processes: StatusProcess[];
  /** Functions monitored (live call counts in the lenses). */
  monitoring: number;
  /** Functions watched (values as diagnostics). */
  watching: number;
  profiling: boolean;
}

export const NOTHING_ATTACHED: ServerStatus = { processes: [], monitoring: 0, watching: 0, profiling: false };

/** Reads fp/status's params; undefined when they are not a status (the item keeps the last one). */
export function parseStatus(v: unknown): ServerStatus | undefined {
  if (!isRecord(v) || !Array.isArray(v.processes)) {
    return undefined;
  }
  const processes: StatusProcess[] = [];
  for (const p of v.processes) {
    if (!isRecord(p) || typeof p.pid !== 'number') {
      return undefined;
    }
    processes.push({
      pid: p.pid,
      parent: typeof p.parent === 'number' ? p.parent : undefined,
      python: typeof p.python_version === 'string' ? p.python_version : '',
      cmdline: typeof p.cmdline === 'string' ? p.cmdline : '',
    });
  }
  return {
    processes,
    monitoring: count(v.monitoring),
    watching: count(v.watching),
    profiling: v.profiling === true,
  };
}

export interface StatusView {
  text: string;
  tooltip: string;
}

/**
 * "fp: 4242 · monitoring 12 functions · watching 1 · profiling"; with child processes
 * "fp: 4242 +3"; nothing attached "fp: not attached".
 */
export function statusView(s: ServerStatus): StatusView {
  if (s.processes.length === 0) {
    return { text: '$(debug-disconnect) fp: not attached', tooltip: 'fp: no process attached. Click to attach to one.' };
  }
  const first = s.processes.find((p) => p.parent === undefined) ?? s.processes[0];
  const others = s.processes.length - 1;
  const act = activity(s);
  const parts = [`fp: ${first?.pid ?? '?'}${others > 0 ? ` +${others}` : ''}`, ...act];
  const lines = s.processes.map(
    (p) =>
      `${p.pid}${p.parent === undefined ? '' : ` (child of ${p.parent})`}` +
      `${p.python === '' ? '' : `, Python ${p.python}`}${p.cmdline === '' ? '' : `: ${p.cmdline}`}`,
  );
  return {
    text: `$(pulse) ${parts.join(' · ')}`,
    tooltip: `fp: attached to\n${lines.join('\n')}\n${act.length === 0 ? 'nothing active' : act.join(', ')}\nClick for the actions.`,
  };
}

function activity(s: ServerStatus): string[] {
  const out: string[] = [];
  if (s.monitoring > 0) {
    out.push(`monitoring ${s.monitoring} function${s.monitoring === 1 ? '' : 's'}`);
  }
  if (s.watching > 0) {
    out.push(`watching ${s.watching}`);
  }
  if (s.profiling) {
    out.push('profiling');
  }
  return out;
}

export interface StatusAction {
  label: string;
  /** The VS Code command it runs. */
  command: string;
}

/** What clicking the item offers, for the state it shows. */
export function statusActions(s: ServerStatus): StatusAction[] {
  const attached = s.processes.length > 0;
  const actions: StatusAction[] = [
    { label: attached ? '$(plug) Attach to Another Process…' : '$(plug) Attach to Process…', command: 'fp.attachToProcess' },
  ];
  if (attached) {
    actions.push({ label: '$(debug-disconnect) Detach', command: 'fp.detachProcess' });
    actions.push({
      label: s.profiling ? '$(debug-stop) Stop Profiling' : '$(flame) Profile (Hot Lines)',
      command: s.profiling ? 'fp.stopProfiling' : 'fp.profileHotLines',
    });
    actions.push({ label: '$(list-tree) Show Thread Stacks', command: 'fp.showThreadStacks' });
  }
  actions.push({ label: '$(output) Show Server Log', command: 'fp.showLog' });
  actions.push({ label: '$(debug-restart) Restart fp-lsp', command: 'fp.restartServer' });
  return actions;
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
