// The palette and context-menu commands, each a `workspace/executeCommand` of fp-lsp.
// Plain Node, no `vscode` import.
//
// The extension's command ids differ from the server's on purpose: vscode-languageclient
// registers every command the server lists in `executeCommandProvider` under the server's id
// (that is how a lens carrying `fp.watch` runs), so the same id here would collide with it.

/** Where the command was asked for: the active editor, when there is one. */
export interface EditorContext {
  uri: string;
  line: number;
  character: number;
}

export type CommandTarget = 'none' | 'function' | 'file';

export interface PaletteCommand {
  /** The VS Code command id (keybindings, package.json). */
  id: string;
  /** The fp-lsp command it sends. */
  server: string;
  /** What it acts on: nothing, the function under the cursor, or the file. */
  target: CommandTarget;
}

export const PALETTE_COMMANDS: readonly PaletteCommand[] = [
  { id: 'fp.attachToProcess', server: 'fp.attach', target: 'none' },
  { id: 'fp.detachProcess', server: 'fp.detach', target: 'none' },
  { id: 'fp.watchFunction', server: 'fp.watch', target: 'function' },
  { id: 'fp.traceFunction', server: 'fp.trace', target: 'function' },
  { id: 'fp.monitorFunction', server: 'fp.monitor', target: 'function' },
  { id: 'fp.monitorFile', server: 'fp.monitor', target: 'file' },
  { id: 'fp.profileHotLines', server: 'fp.profile', target: 'function' },
  { id: 'fp.stopFunction', server: 'fp.stop', target: 'function' },
  { id: 'fp.reloadFunction', server: 'fp.reload', target: 'function' },
  { id: 'fp.showThreadStacks', server: 'fp.stack', target: 'none' },
];

/** Commands of the extension itself, not sent to the server. */
export const LOCAL_COMMANDS: readonly string[] = ['fp.showLog', 'fp.restartServer'];

/** The server command that lists the processes for the attach quick pick. */
export const LIST_PROCESSES = 'fp.listProcesses';

export type Arguments = { ok: true; args: unknown[] } | { ok: false; message: string };

/**
 * The `arguments` of the executeCommand request. A function or file command takes the
 * document and cursor in LSP's TextDocumentPositionParams shape, so the server finds the
 * function under the cursor with the text it already has.
 */
export function commandArguments(cmd: PaletteCommand, editor: EditorContext | undefined): Arguments {
  if (cmd.target === 'none') {
    return { ok: true, args: [] };
  }
  if (editor === undefined) {
    return {
      ok: false,
      message: `${cmd.server} acts on the ${cmd.target} under the cursor: open a Python file and place the cursor in it first.`,
    };
  }
  if (cmd.target === 'file') {
    return { ok: true, args: [{ textDocument: { uri: editor.uri }, scope: 'file' }] };
  }
  return {
    ok: true,
    args: [{ textDocument: { uri: editor.uri }, position: { line: editor.line, character: editor.character } }],
  };
}

/** The arguments of `fp.attach` for one picked process. */
export function attachArguments(pid: number, children: boolean): unknown[] {
  return [{ pid, children }];
}
