// The VS Code side of fp: finds and starts fp-lsp over stdio with vscode-languageclient for
// Python documents, and turns the palette commands into `workspace/executeCommand` requests.
// Everything it shows comes from the server; what can be decided without VS Code lives in
// server.ts, settings.ts, commands.ts, processes.ts, process.ts and restarts.ts (unit-tested
// in plain Node).
import * as os from 'node:os';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  ResponseError,
  State,
} from 'vscode-languageclient/node';
import type { LanguageClientOptions, ServerOptions } from 'vscode-languageclient/node';
import {
  attachArguments,
  commandArguments,
  LIST_PROCESSES,
  PALETTE_COMMANDS,
  type EditorContext,
  type PaletteCommand,
} from './commands';
import { formatProcess, orderProcesses, parseProcessList, type PickItem } from './processes';
import { describeEnding, ServerProcess } from './process';
import { RestartBudget, StartupLines } from './restarts';
import { checkServerVersion, probeServer, resolveServer, type Problem } from './server';
import { initializationOptions, needsRestart, readSettings, serverExecutable } from './settings';

const OPEN_SETTINGS = 'Open Settings';
const SHOW_LOG = 'Show Log';

let fp: FpClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('fp', { log: true });
  context.subscriptions.push(log);
  const version = (context.extension.packageJSON as { version?: string }).version ?? '?';
  log.info(`fp extension ${version} in VS Code ${vscode.version} (${vscode.env.remoteName ?? 'local'})`);

  fp = new FpClient(context.extensionPath, log);
  const client = fp;
  context.subscriptions.push(
    { dispose: () => void client.stop() },
    vscode.commands.registerCommand('fp.showLog', () => {
      log.show(true);
    }),
    vscode.commands.registerCommand('fp.restartServer', () => client.restart()),
    ...PALETTE_COMMANDS.map((cmd) => vscode.commands.registerCommand(cmd.id, () => runPaletteCommand(client, cmd))),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (needsRestart((section) => e.affectsConfiguration(section))) {
        log.info('fp.serverPath changed: starting fp-lsp again');
        void client.restart();
      }
    }),
  );
  // Not awaited: activation (and whatever waits for it) does not wait for the server.
  void client.start();
}

export async function deactivate(): Promise<void> {
  await fp?.stop();
  fp = undefined;
}

/** One fp-lsp and the reason it is not running, when it is not. */
class FpClient {
  private client: LanguageClient | undefined;
  /** The fp-lsp process of the client above (a new one after each restart). */
  private proc: ServerProcess | undefined;
  private problem: Problem | undefined = { message: 'fp-lsp has not been started yet.', hint: '' };

  constructor(
    private readonly extensionDir: string,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  async start(): Promise<void> {
    const config = vscode.workspace.getConfiguration('fp');
    const settings = readSettings((key) => config.get(key));
    const workspaceDir = firstFolder();
    const found = resolveServer({
      configuredPath: settings.serverPath,
      extensionDir: this.extensionDir,
      workspaceDir,
      homeDir: os.homedir(),
      pathEnv: process.env.PATH,
    });
    if (!found.ok) {
      this.fail(found.problem);
      return;
    }
    const { path: serverPath, source } = found.value;
    const probed = await probeServer(serverPath);
    const checked = probed.ok ? checkServerVersion(serverPath, probed.value) : probed;
    if (!checked.ok) {
      this.fail(checked.problem);
      return;
    }
    this.log.info(`using fp-lsp ${checked.value} at ${serverPath} (from ${source})`);

    const exe = serverExecutable(serverPath, workspaceDir, process.env);
    // The extension spawns fp-lsp itself, to know how it ended and to reap it on stop.
    const serverOptions: ServerOptions = async () => {
      said.clear();
      this.proc = await ServerProcess.start(exe);
      return this.proc.child;
    };
    // fp-lsp's stderr is its log: into the output channel, the first lines also kept for
    // the message when it exits before it serves.
    const said = new StartupLines();
    const budget = new RestartBudget();
    // Set from start() below, read by the callbacks (an object, so the checks see the write).
    const state = { serving: false };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file', language: 'python' }],
      outputChannel: this.log,
      initializationOptions: initializationOptions(settings),
      stdioOptions: {
        stdout: () => undefined, // stdout carries LSP; vscode-languageclient reads it
        stderr: (input) => {
          readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', (line) => {
            said.add(line);
            this.log.info(line);
          });
        },
      },
      initializationFailedHandler: (err) => {
        this.log.error(`initialize failed: ${errorText(err)}`);
        return false;
      },
      errorHandler: {
        // Before it serves, start() says what went wrong, once; no notification per write.
        error: (_err, _msg, count) => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: !state.serving,
        }),
        closed: () => {
          if (!state.serving) {
            // Reported once, by start(), with how it ended and what it said.
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          if (budget.allow(Date.now())) {
            this.log.warn(`fp-lsp ${this.endingText()}; starting it again`);
            return { action: CloseAction.Restart, handled: true };
          }
          this.client = undefined;
          this.fail({
            message: `fp-lsp ${this.endingText()}, the ${budget.max + 1}th time within ${budget.windowMs / 60_000} minutes, so it is not started again.`,
            hint: 'Its log is in the fp output channel; run "fp: Restart fp-lsp" once the cause is fixed.',
          });
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient('fp', 'fp', serverOptions, clientOptions);
    this.client = client;
    this.problem = undefined;
    try {
      await client.start();
      state.serving = true;
      this.log.info('fp-lsp is running');
    } catch (err) {
      this.client = undefined;
      // The connection fails as soon as the server is gone; its exit and last output follow.
      const ending = await this.proc?.waitClosed(2000);
      const first = said.first();
      this.fail(
        ending !== undefined
          ? {
              message:
                `fp-lsp ${describeEnding(ending)} before it answered initialize` +
                (first === undefined ? '.' : `; it said: "${first}"`),
              hint: `Run ${serverPath} in a terminal to see why; its whole log is in the fp output channel.`,
            }
          : {
              message: `fp-lsp did not start: ${errorText(err)}.`,
              hint: 'What the server said is in the fp output channel.',
            },
      );
      await this.shutdown(client);
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.problem = { message: 'fp-lsp was stopped.', hint: 'Run "fp: Restart fp-lsp" to start it again.' };
    await this.shutdown(client);
  }

  /** LSP shutdown and exit when it is running, then make sure the process is gone. */
  private async shutdown(client: LanguageClient | undefined): Promise<void> {
    if (client !== undefined) {
      await stopQuietly(client);
    }
    const proc = this.proc;
    this.proc = undefined;
    if (proc !== undefined) {
      const e = await proc.reap();
      this.log.info(`fp-lsp ${describeEnding(e)}`);
    }
  }

  private endingText(): string {
    const e = this.proc?.ended;
    return e === undefined ? 'stopped' : describeEnding(e);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Sends one `workspace/executeCommand`; undefined after telling the user what went wrong. */
  async execute(command: string, args: unknown[]): Promise<unknown> {
    const client = this.client;
    if (client?.state !== State.Running) {
      const why = this.problem ?? { message: 'fp-lsp is not running.', hint: '' };
      void showProblem(this.log, { message: `${command}: fp-lsp is not running. ${why.message}`, hint: why.hint });
      return undefined;
    }
    try {
      return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    } catch (err) {
      const message = err instanceof ResponseError ? err.message : errorText(err);
      this.log.error(`${command} failed: ${message}`);
      void vscode.window.showErrorMessage(`fp: ${message}`, SHOW_LOG).then((choice) => {
        if (choice === SHOW_LOG) {
          this.log.show(true);
        }
      });
      return undefined;
    }
  }

  private fail(problem: Problem): void {
    this.problem = problem;
    void showProblem(this.log, problem);
  }
}

async function runPaletteCommand(fp: FpClient, cmd: PaletteCommand): Promise<void> {
  if (cmd.server === 'fp.attach') {
    await attach(fp);
    return;
  }
  const built = commandArguments(cmd, editorContext());
  if (!built.ok) {
    void vscode.window.showWarningMessage(`fp: ${built.message}`);
    return;
  }
  await fp.execute(cmd.server, built.args);
}

const WITH_CHILDREN: vscode.QuickInputButton = {
  iconPath: new vscode.ThemeIcon('type-hierarchy-sub'),
  tooltip: 'Attach with child processes (the workers of a service)',
};

async function attach(fp: FpClient): Promise<void> {
  const answer = await fp.execute(LIST_PROCESSES, []);
  if (answer === undefined) {
    return;
  }
  const list = parseProcessList(answer);
  if (!list.ok) {
    void vscode.window.showErrorMessage(`fp: ${list.message}`);
    return;
  }
  if (list.processes.length === 0) {
    void vscode.window.showInformationMessage(
      'fp: no Python process that you may attach to is running. Start your service, then try again.',
    );
    return;
  }
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  const items = orderProcesses(list.processes, folders).map((p) => ({ ...formatProcess(p), buttons: [WITH_CHILDREN] }));
  const picked = await new Promise<{ item: PickItem; children: boolean } | undefined>((resolve) => {
    const qp = vscode.window.createQuickPick<PickItem & vscode.QuickPickItem>();
    qp.title = 'fp: Attach to Process';
    qp.placeholder = 'Type to filter by pid, command line or folder';
    qp.matchOnDescription = true;
    qp.matchOnDetail = true;
    qp.items = items;
    let done = false;
    const finish = (v: { item: PickItem; children: boolean } | undefined): void => {
      if (!done) {
        done = true;
        resolve(v);
        qp.dispose();
      }
    };
    qp.onDidAccept(() => {
      const item = qp.selectedItems[0];
      finish(item === undefined ? undefined : { item, children: false });
    });
    qp.onDidTriggerItemButton((e) => {
      finish({ item: e.item, children: true });
    });
    qp.onDidHide(() => {
      finish(undefined);
    });
    qp.show();
  });
  if (picked !== undefined) {
    await fp.execute('fp.attach', attachArguments(picked.item.pid, picked.children));
  }
}

function editorContext(): EditorContext | undefined {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    return undefined;
  }
  const pos = editor.selection.active;
  return { uri: editor.document.uri.toString(), line: pos.line, character: pos.character };
}

function firstFolder(): string | undefined {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder?.uri.scheme === 'file' ? folder.uri.fsPath : undefined;
}

async function showProblem(log: vscode.LogOutputChannel, problem: Problem): Promise<void> {
  log.error(problem.hint === '' ? problem.message : `${problem.message} Fix: ${problem.hint}`);
  const choice = await vscode.window.showErrorMessage(
    `fp: ${problem.message} ${problem.hint}`.trim(),
    OPEN_SETTINGS,
    SHOW_LOG,
  );
  if (choice === OPEN_SETTINGS) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'fp.serverPath');
  } else if (choice === SHOW_LOG) {
    log.show(true);
  }
}

async function stopQuietly(client: LanguageClient): Promise<void> {
  try {
    // A server that never started or already died has nothing to shut down.
    if (client.state !== State.Stopped) {
      await client.stop(2000);
    }
  } catch {
    // Already reported through the output channel by vscode-languageclient.
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
