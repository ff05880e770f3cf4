// The fp-lsp child process, owned here rather than by vscode-languageclient so that the
// extension knows how it ended (exit code, signal) and always reaps it. Plain Node.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { ServerExecutable } from './settings';

export interface Ending {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ServerProcess {
  private ending: Ending | undefined;
  /** Resolves once the process has exited and its stdio has been read to the end. */
  readonly closed: Promise<Ending>;

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    this.closed = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.ending = { code, signal };
        resolve(this.ending);
      });
    });
  }

  /** Starts the server; rejects when it cannot be run at all (ENOENT, EACCES). */
  static start(exe: ServerExecutable): Promise<ServerProcess> {
    return new Promise((resolve, reject) => {
      const child = spawn(exe.command, exe.args, { ...exe.options, stdio: 'pipe' });
      child.once('spawn', () => {
        resolve(new ServerProcess(child));
      });
      child.once('error', reject);
    });
  }

  /** How it ended, or undefined while it runs. */
  get ended(): Ending | undefined {
    return this.ending;
  }

  /** Waits at most `ms` for it to end by itself. */
  async waitClosed(ms: number): Promise<Ending | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        resolve(undefined);
      }, ms);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Gives it `graceMs` to end (after LSP exit), then SIGTERM, then SIGKILL. */
  async reap(graceMs = 2000): Promise<Ending> {
    for (const signal of [undefined, 'SIGTERM', 'SIGKILL'] as const) {
      if (signal !== undefined && this.ending === undefined) {
        this.child.kill(signal);
      }
      const e = await this.waitClosed(graceMs);
      if (e !== undefined) {
        return e;
      }
    }
    return this.closed;
  }
}

/** "exited with code 2", "was killed by SIGSEGV". */
export function describeEnding(e: Ending): string {
  return e.signal !== null ? `was killed by ${e.signal}` : `exited with code ${e.code ?? '?'}`;
}
