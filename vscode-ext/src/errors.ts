// What fp-lsp's errors and command results tell the user: the server's message and remedy
// (an fp error carries `data: {code, hint}`), the README section that explains the problem,
// and one line for a command that worked, in part or in full. Plain Node, no `vscode` import.
import { readdirSync } from 'node:fs';
import * as path from 'node:path';

export interface ServerError {
  message: string;
  /** fp's error code name ("permission", "not_python", "agent_timeout", ...), when fp's. */
  code: string | undefined;
  /** What to do, as the server says it. */
  hint: string;
}

/** An LSP ResponseError's message and data as a ServerError. */
export function serverError(message: string, data: unknown): ServerError {
  const d = isRecord(data) ? data : {};
  return {
    message: message.trim(),
    code: typeof d.code === 'string' ? d.code : undefined,
    hint: typeof d.hint === 'string' ? d.hint.trim() : '',
  };
}

/**
 * The heading of the extension README's troubleshooting section for an fp error code (a unit
 * test checks that each heading is in README.md).
 */
export function troubleshootingHeading(code: string | undefined): string {
  switch (code) {
    case 'permission':
      return 'Permission denied (ptrace)';
    case 'not_python':
    case 'no_process':
    case 'exiting':
      return 'Not a Python process';
    case 'agent_timeout':
    case 'timeout':
    case 'inject':
      return 'A command times out (a thread holds the GIL)';
    case 'untrusted':
      return 'Refusing a socket or library';
    case 'missing_command':
      return 'A command this fp-lsp does not serve';
    case 'server':
      return 'fp-lsp is missing, too old or stops';
    default:
      return 'Troubleshooting';
  }
}

/**
 * The extension's README in its folder: `vsce package` stores it as `readme.md`, a source
 * checkout has `README.md`. Undefined when there is none.
 */
export function readmeFile(extensionDir: string): string | undefined {
  try {
    const name = readdirSync(extensionDir).find((f) => f.toLowerCase() === 'readme.md');
    return name === undefined ? undefined : path.join(extensionDir, name);
  } catch {
    return undefined;
  }
}

/** The 0-based line of a markdown heading (any level) with exactly this text, or undefined. */
export function headingLine(markdown: string, heading: string): number | undefined {
  const lines = markdown.split('\n');
  const i = lines.findIndex((l) => /^#{1,6} /.test(l) && l.replace(/^#{1,6} /, '').trim() === heading);
  return i < 0 ? undefined : i;
}

/**
 * The notification text: "fp: <what failed>: <message>. <hint>", the hint's lines joined (a
 * notification is one paragraph; the log keeps them as they were).
 */
export function errorText(what: string, e: ServerError): string {
  const message = e.message.replace(/\.$/, '');
  const hint = e.hint.replace(/\s*\n\s*/g, ' ');
  return `fp: ${what}: ${message}.${hint === '' ? '' : ` ${hint}`}`;
}

export interface Failure {
  pid: number;
  message: string;
  hint: string;
  code: string | undefined;
}

export interface Outcome {
  /** "info" when everything worked, "warning" when some processes failed. */
  level: 'info' | 'warning';
  message: string;
  failures: Failure[];
}

/**
 * One line for a command's result. fp-lsp's commands on the attached processes answer
 * `{pids: [...], failed: [{pid, code, message, hint}], ...}`, fp.attach `{attached, failed}`.
 */
export function outcome(serverCommand: string, result: unknown): Outcome {
  const r = isRecord(result) ? result : {};
  const failures = Array.isArray(r.failed) ? r.failed.filter(isRecord).map(failure) : [];
  const pids = Array.isArray(r.pids) ? r.pids.filter((p): p is number => typeof p === 'number') : [];
  const fn = typeof r.function === 'string' ? r.function : undefined;
  const where = pids.length === 0 ? '' : ` in ${processes(pids)}`;
  let message: string;
  switch (serverCommand) {
    case 'fp.attach': {
      const attached = Array.isArray(r.attached) ? r.attached.filter(isRecord) : [];
      message =
        attached.length === 0
          ? 'attached to no process'
          : `attached to ${attached
              .map((a) => `${String(a.pid)}${typeof a.python_version === 'string' ? ` (Python ${a.python_version})` : ''}`)
              .join(', ')}`;
      break;
    }
    case 'fp.detach': {
      const gone = Array.isArray(r.detached) ? r.detached.filter((p): p is number => typeof p === 'number') : [];
      message = gone.length === 0 ? 'no process was attached' : `detached from ${processes(gone)}`;
      break;
    }
    case 'fp.watch':
      message = `watching ${fn ?? 'the function'}${where}: its calls appear as diagnostics on its line`;
      break;
    case 'fp.monitor': {
      const fns = Array.isArray(r.functions) ? r.functions.length : 0;
      if (typeof r.stopped === 'number') {
        message = `monitoring stopped (${r.stopped})`;
      } else {
        message = `monitoring ${fns === 1 ? String((r.functions as unknown[])[0]) : `${fns} functions`}${where}: the figures appear in the lenses`;
      }
      break;
    }
    case 'fp.stop':
      message = `stopped on ${fn ?? 'the function'}: ${num(r.watches)} watch${num(r.watches) === 1 ? '' : 'es'}, ${num(r.monitors)} monitor${num(r.monitors) === 1 ? '' : 's'}`;
      break;
    case 'fp.reload':
      message = `reloaded ${fn ?? 'the function'}${where}`;
      break;
    default:
      message = `${serverCommand} done${where}`;
  }
  if (failures.length > 0) {
    message += `; failed in ${failures.map((f) => `${f.pid}: ${f.message.replace(/\.$/, '')}${f.hint === '' ? '' : ` (${f.hint.replace(/\s*\n\s*/g, ' ')})`}`).join('; ')}`;
  }
  return { level: failures.length > 0 ? 'warning' : 'info', message, failures };
}

function failure(f: Record<string, unknown>): Failure {
  return {
    pid: typeof f.pid === 'number' ? f.pid : 0,
    message: typeof f.message === 'string' ? f.message : 'failed',
    hint: typeof f.hint === 'string' ? f.hint : '',
    code: typeof f.code === 'string' ? f.code : undefined,
  };
}

function processes(pids: readonly number[]): string {
  return `${pids.length === 1 ? 'process' : 'processes'} ${pids.join(', ')}`;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
