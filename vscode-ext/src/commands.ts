// The palette and context-menu commands, each a `workspace/executeCommand` of fp-lsp, and what
// to say when the running fp-lsp does not serve one. Plain Node, no `vscode` import.
//
// The extension's command ids differ from the server's on purpose: vscode-languageclient
// registers every command the server lists in `executeCommandProvider` under the server's id
// (that is how a lens carrying `fp.watch` runs), so the same id here would collide with it.

/** Where the command was asked for: the active editor, when there is one. */
export interface EditorContext {
  uri: string;
  /** The cursor, 0-based. */
  line: number;
  character: number;
}

/**
 * What a command acts on: nothing, the function under the cursor, the file, or the attached
 * process(es) (a pid when one is chosen, else every attached process).
 */
export type CommandTarget = 'none' | 'function' | 'file' | 'process';

export interface PaletteCommand {
  /** The VS Code command id (keybindings, package.json). */
  id: string;
  /** The fp-lsp command it sends. */
  server: string;
  target: CommandTarget;
  /** The palette title without the category, for messages. */
  title: string;
}

export const PALETTE_COMMANDS: readonly PaletteCommand[] = [
  { id: 'fp.attachToProcess', server: 'fp.attach', target: 'none', title: 'Attach to Process…' },
  { id: 'fp.detachProcess', server: 'fp.detach', target: 'process', title: 'Detach' },
  { id: 'fp.watchFunction', server: 'fp.watch', target: 'function', title: 'Watch This Function' },
  { id: 'fp.traceFunction', server: 'fp.trace', target: 'function', title: 'Trace This Function' },
  { id: 'fp.monitorFunction', server: 'fp.monitor', target: 'function', title: 'Monitor This Function' },
  { id: 'fp.monitorFile', server: 'fp.monitor', target: 'file', title: 'Monitor This File' },
  { id: 'fp.profileHotLines', server: 'fp.profile', target: 'process', title: 'Profile (Hot Lines)' },
  { id: 'fp.stopProfiling', server: 'fp.profile.stop', target: 'process', title: 'Stop Profiling' },
  { id: 'fp.stopFunction', server: 'fp.stop', target: 'function', title: 'Stop (Watch and Monitor of This Function)' },
  { id: 'fp.reloadFunction', server: 'fp.reload', target: 'function', title: 'Reload Function Into Process' },
  { id: 'fp.showThreadStacks', server: 'fp.stack', target: 'process', title: 'Show Thread Stacks' },
];

/** Commands of the extension itself, not sent to the server. */
export const LOCAL_COMMANDS: readonly string[] = ['fp.showLog', 'fp.restartServer', 'fp.showActions'];

/** The server command that lists the processes for the attach quick pick. */
export const LIST_PROCESSES = 'fp.listProcesses';
/** The server command that answers what fp/status notifies. */
export const STATUS = 'fp.status';

/**
 * Every fp-lsp command the extension or the server's lenses may run. Those the running server
 * does not list get a stand-in that says so (see missingCommandMessage), so neither a palette
 * command nor a lens ends in VS Code's "command not found".
 */
export const SERVER_COMMANDS: readonly string[] = [
  ...new Set([LIST_PROCESSES, STATUS, ...PALETTE_COMMANDS.map((c) => c.server)]),
];

export type Arguments = { ok: true; args: unknown[] } | { ok: false; message: string };

/**
 * The `arguments` of the executeCommand request, in fp-lsp's shapes (protocol: server/lsp/
 * commands.c): a function is `{uri, line}` with the cursor's 0-based line, and the server
 * finds the function there in the text it already has; a file is `{uri, scope: "file"}`; a
 * process command takes `{pid}` for one process, `{}` for every attached one.
 */
export function commandArguments(cmd: PaletteCommand, editor: EditorContext | undefined, pid?: number): Arguments {
  if (cmd.target === 'none') {
    return { ok: true, args: [] };
  }
  if (cmd.target === 'process') {
    return { ok: true, args: [pid === undefined ? {} : { pid }] };
  }
  if (editor === undefined) {
    return {
      ok: false,
      message: `${cmd.title} acts on the ${cmd.target} under the cursor: open a Python file and place the cursor in it first.`,
    };
  }
  if (cmd.target === 'file') {
    return { ok: true, args: [{ uri: editor.uri, scope: 'file' }] };
  }
  return { ok: true, args: [{ uri: editor.uri, line: editor.line }] };
}

/** The arguments of `fp.attach` for one picked process. */
export function attachArguments(pid: number, children: boolean): unknown[] {
  return [{ pid, children }];
}

/** The server commands of the extension's list that the running server does not serve. */
export function missingCommands(served: readonly string[] | undefined): string[] {
  const have = new Set(served ?? []);
  return SERVER_COMMANDS.filter((c) => !have.has(c));
}

/**
 * What to tell the user who asked for a command the running fp-lsp does not serve: which
 * command, which server, and what to do.
 */
export function missingCommandMessage(
  serverCommand: string,
  server: { version: string; path: string },
  served: readonly string[] | undefined,
): { message: string; hint: string } {
  const asked = PALETTE_COMMANDS.find((c) => c.server === serverCommand);
  const what = asked === undefined ? serverCommand : `"${asked.title}" (${serverCommand})`;
  const list = served === undefined || served.length === 0 ? 'none' : served.join(', ');
  return {
    message: `${what} is not served by this fp-lsp (${server.version} at ${server.path}); it serves ${list}.`,
    hint: 'Update fp to a version with this command (`git pull && make build && make install`, or point fp.serverPath at the newer build/bin/fp-lsp), then run "fp: Restart fp-lsp".',
  };
}
