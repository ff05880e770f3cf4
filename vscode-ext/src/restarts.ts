// When fp-lsp stops by itself: start it again, but not forever. Plain Node, no `vscode` import.

/** At most `max` restarts within `windowMs`; past that the server stays stopped. */
export class RestartBudget {
  private readonly times: number[] = [];

  constructor(
    readonly max = 4,
    readonly windowMs = 3 * 60_000,
  ) {}

  /** Records a stop at `now`; true when the server may be started again. */
  allow(now: number): boolean {
    while (this.times.length > 0 && now - (this.times[0] ?? now) > this.windowMs) {
      this.times.shift();
    }
    this.times.push(now);
    return this.times.length <= this.max;
  }
}

/**
 * Keeps the first lines a process wrote since it started: a server that exits at once says
 * why in its first line, which goes into the message about it.
 */
export class StartupLines {
  private readonly lines: string[] = [];

  constructor(readonly keep = 5) {}

  add(line: string): void {
    if (line.trim() === '') {
      return;
    }
    if (this.lines.length < this.keep) {
      this.lines.push(line);
    }
  }

  first(): string | undefined {
    return this.lines[0];
  }

  clear(): void {
    this.lines.length = 0;
  }
}
