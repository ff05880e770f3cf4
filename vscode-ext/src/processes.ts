// The attach quick pick's list: what `fp.listProcesses` answered, the workspace's own
// processes first, formatted for a QuickPickItem. Plain Node, no `vscode` import.
//
// The fields are fp-lsp's (server/core/models.c): pid, ppid, user, python_version, exe,
// cmdline, cwd, and attached (already attached by this server).
import * as path from 'node:path';

export interface ProcessInfo {
  pid: number;
  cmdline: string;
  python: string;
  cwd: string;
  user: string;
  attached: boolean;
}

export type ProcessList = { ok: true; processes: ProcessInfo[] } | { ok: false; message: string };

/** Checks the shape of the server's answer; entries without a pid are an error, not skipped. */
export function parseProcessList(result: unknown): ProcessList {
  const items: unknown = isRecord(result) && Array.isArray(result.processes) ? result.processes : result;
  if (!Array.isArray(items)) {
    return { ok: false, message: `fp.listProcesses answered ${describe(result)}, not a list of processes.` };
  }
  const processes: ProcessInfo[] = [];
  for (const item of items) {
    if (!isRecord(item) || typeof item.pid !== 'number' || !Number.isInteger(item.pid) || item.pid <= 0) {
      return { ok: false, message: `fp.listProcesses answered an entry without a pid: ${describe(item)}.` };
    }
    processes.push({
      pid: item.pid,
      cmdline: text(item.cmdline),
      python: text(item.python_version ?? item.python),
      cwd: text(item.cwd),
      user: text(item.user),
      attached: item.attached === true,
    });
  }
  return { ok: true, processes };
}

/** True when the process runs in, or was started on files inside, one of the folders. */
export function inWorkspace(p: ProcessInfo, folders: readonly string[]): boolean {
  return folders.some((folder) => {
    const root = folder.endsWith(path.sep) ? folder : folder + path.sep;
    return p.cwd === folder || p.cwd.startsWith(root) || p.cmdline.split(/\s+/).some((w) => w.startsWith(root));
  });
}

/** The workspace's processes first, then the others; each group by pid. */
export function orderProcesses(list: readonly ProcessInfo[], folders: readonly string[]): ProcessInfo[] {
  return [...list]
    .map((p) => ({ p, own: inWorkspace(p, folders) }))
    .sort((a, b) => Number(b.own) - Number(a.own) || a.p.pid - b.p.pid)
    .map((x) => x.p);
}

export interface PickItem {
  label: string;
  description: string;
  detail: string;
  pid: number;
}

/** "4242  python3 -m shop.app" / "Python 3.12.3 · alice" / "cwd /srv/shop · /usr/bin/python3". */
export function formatProcess(p: ProcessInfo, maxCmdline = 120): PickItem {
  // The label names the interpreter by its file name, keeping room for the script and its
  // arguments, which tell services apart; its whole path (which environment) is in the detail.
  const words = p.cmdline.split(' ');
  const interpreter = words[0]?.includes('/') === true ? words[0] : undefined;
  const shown = interpreter === undefined ? p.cmdline : [path.basename(interpreter), ...words.slice(1)].join(' ');
  const cmd = shown.length > maxCmdline ? shown.slice(0, maxCmdline - 1) + '…' : shown;
  const description = [p.python === '' ? '' : `Python ${p.python}`, p.user, p.attached ? 'attached' : '']
    .filter((s) => s !== '')
    .join(' · ');
  return {
    label: cmd === '' ? `${p.pid}` : `${p.pid}  ${cmd}`,
    description,
    detail: [p.cwd === '' ? '' : `cwd ${p.cwd}`, interpreter ?? ''].filter((x) => x !== '').join(' · '),
    pid: p.pid,
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown): string {
  if (typeof v === 'string') {
    return v;
  }
  if (typeof v === 'number') {
    return String(v);
  }
  return Array.isArray(v) ? v.map((x) => String(x)).join(' ') : '';
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) as string | undefined;
  if (s === undefined) {
    return String(v);
  }
  return s.length > 80 ? s.slice(0, 79) + '…' : s;
}
