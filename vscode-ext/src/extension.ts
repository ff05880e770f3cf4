// The VS Code side of fp: finds and starts fp-lsp over stdio with vscode-languageclient for
// Python documents, turns the palette and context-menu commands into `workspace/executeCommand`
// requests, and shows fp/status in the status bar. Everything it shows comes from the server;
// what can be decided without VS Code lives in server.ts, settings.ts, commands.ts,
// processes.ts, status.ts, errors.ts, process.ts and restarts.ts (unit-tested in plain Node).
import * as os from 'node:os';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
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
  missingCommandMessage,
  missingCommands,
  PALETTE_COMMANDS,
  STATUS,
  type EditorContext,
  type PaletteCommand,
} from './commands';
import {
  errorText,
  headingLine,
  outcome,
  readmeFile,
  serverError,
  troubleshootingHeading,
  type ServerError,
} from './errors';
import { formatProcess, orderProcesses, parseProcessList, type PickItem } from './processes';
import { describeEnding, ServerProcess } from './process';
import { RestartBudget, StartupLines } from './restarts';
import { checkServerVersion, probeServer, resolveServer, type Problem } from './server';
import { initializationOptions, needsRestart, needsUpdate, readSettings, serverExecutable } from './settings';
import { NOTHING_ATTACHED, parseStatus, statusActions, statusView, type ServerStatus } from './status';

const OPEN_SETTINGS = 'Open Settings';
const SHOW_LOG = 'Show Log';
const OPEN_README = 'Open README';

let fp: FpClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('fp', { log: true });
  context.subscriptions.push(log);
  const version = (context.extension.packageJSON as { version?: string }).version ?? '?';
  log.info(`fp extension ${version} in VS Code ${vscode.version} (${vscode.env.remoteName ?? 'local'})`);

  const item = vscode.window.createStatusBarItem('fp.status', vscode.StatusBarAlignment.Left, 10);
  item.name = 'fp';
  item.command = 'fp.showActions';
  context.subscriptions.push(item);

  fp = new FpClient(context.extensionPath, log, item);
  const client = fp;
  context.subscriptions.push(
    { dispose: () => void client.stop() },
    vscode.commands.registerCommand('fp.showLog', () => {
      log.show(true);
    }),
    vscode.commands.registerCommand('fp.restartServer', () => client.restart()),
    vscode.commands.registerCommand('fp.showActions', () => showActions(client)),
    ...PALETTE_COMMANDS.map((cmd) => vscode.commands.registerCommand(cmd.id, () => runPaletteCommand(client, cmd))),
    vscode.workspace.onDidChangeConfiguration((e) => {
      const changed = (section: string): boolean => e.affectsConfiguration(section);
      if (needsRestart(changed)) {
        log.info('fp.serverPath changed: starting fp-lsp again');
        void client.restart();
      } else if (needsUpdate(changed)) {
        client.sendSettings();
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

/** One fp-lsp, what it serves, what it says is attached, and the reason it is not running. */
class FpClient {
  private client: LanguageClient | undefined;
  /** The fp-lsp process of the client above (a new one after each restart). */
  private proc: ServerProcess | undefined;
  private problem: Problem | undefined = { message: 'fp-lsp has not been started yet.', hint: '' };
  /** The running server: its version, path and executeCommandProvider.commands. */
  private server: { version: string; path: string; commands: string[] | undefined } | undefined;
  /** Stand-ins for the server commands this fp-lsp does not serve (they say so). */
  private standIns: vscode.Disposable[] = [];
  status: ServerStatus = NOTHING_ATTACHED;

  constructor(
    readonly extensionDir: string,
    readonly log: vscode.LogOutputChannel,
    private readonly item: vscode.StatusBarItem,
  ) {
    this.showState('$(loading~spin) fp: starting fp-lsp', 'fp: starting fp-lsp');
  }

  async start(): Promise<void> {
    this.showState('$(loading~spin) fp: starting fp-lsp', 'fp: starting fp-lsp');
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
        this.log.error(`initialize failed: ${plainError(err)}`);
        return false;
      },
      errorHandler: {
        // Before it serves, start() says what went wrong, once; no notification per write.
        error: (_err, _msg, count) => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: !state.serving,
        }),
        closed: () => {
          this.setStatus(NOTHING_ATTACHED);
          if (!state.serving) {
            // Reported once, by start(), with how it ended and what it said.
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          if (budget.allow(Date.now())) {
            this.log.warn(`fp-lsp ${this.endingText()}; starting it again (what it had attached is detached)`);
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
    client.onNotification('fp/status', (params: unknown) => {
      const s = parseStatus(params);
      if (s === undefined) {
        this.log.warn(`fp/status that is not a status: ${JSON.stringify(params)}`);
        return;
      }
      this.setStatus(s);
    });
    try {
      await client.start();
      state.serving = true;
      const commands = client.initializeResult?.capabilities.executeCommandProvider?.commands;
      this.server = { version: checked.value, path: serverPath, commands };
      this.registerStandIns(commands);
      this.log.info(`fp-lsp is running; it serves ${commands?.join(', ') ?? 'no commands'}`);
      this.setStatus(NOTHING_ATTACHED);
      if (commands?.includes(STATUS) === true) {
        const s = parseStatus(await this.execute(STATUS, [], 'the status'));
        if (s !== undefined) {
          this.setStatus(s);
        }
      }
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
              message: `fp-lsp did not start: ${plainError(err)}.`,
              hint: 'What the server said is in the fp output channel.',
            },
      );
      await this.shutdown(client);
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.server = undefined;
    this.problem = { message: 'fp-lsp was stopped.', hint: 'Run "fp: Restart fp-lsp" to start it again.' };
    await this.shutdown(client);
    this.showState('$(circle-slash) fp: fp-lsp stopped', 'fp: fp-lsp was stopped. Click for the actions.');
  }

  /** LSP shutdown and exit when it is running, then make sure the process is gone. */
  private async shutdown(client: LanguageClient | undefined): Promise<void> {
    for (const d of this.standIns) {
      d.dispose();
    }
    this.standIns = [];
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

  /**
   * vscode-languageclient registers the commands the server lists; every other fp-lsp
   * command a palette entry or a lens may run gets a stand-in here that says it is missing.
   */
  private registerStandIns(served: string[] | undefined): void {
    for (const name of missingCommands(served)) {
      this.standIns.push(
        vscode.commands.registerCommand(name, () => {
          this.showMissing(name);
        }),
      );
    }
  }

  /** Whether the running server serves `command`; when not, the user is told so. */
  serves(command: string): boolean {
    if (this.client?.state !== State.Running || this.server === undefined) {
      const why = this.problem ?? { message: 'fp-lsp is not running.', hint: '' };
      void showProblem(this, { message: `${command}: fp-lsp is not running. ${why.message}`, hint: why.hint });
      return false;
    }
    if (this.server.commands?.includes(command) !== true) {
      this.showMissing(command);
      return false;
    }
    return true;
  }

  private showMissing(command: string): void {
    const s = this.server ?? { version: '?', path: '?', commands: undefined };
    const p = missingCommandMessage(command, s, s.commands);
    void showError(this, `fp: ${p.message} ${p.hint}`, `${p.message} Fix: ${p.hint}`, 'missing_command');
  }

  /**
   * Sends one `workspace/executeCommand`; undefined after telling the user what went wrong
   * (the server's message and remedy, with its README section). `what` names the action.
   */
  async execute(command: string, args: unknown[], what: string): Promise<unknown> {
    const client = this.client;
    if (!this.serves(command) || client === undefined) {
      return undefined;
    }
    try {
      return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    } catch (err) {
      const e: ServerError =
        err instanceof ResponseError
          ? serverError(err.message, err.data)
          : { message: plainError(err), code: undefined, hint: '' };
      void showServerError(this, what, e);
      return undefined;
    }
  }

  /** The current settings to the running server (workspace/didChangeConfiguration). */
  sendSettings(): void {
    const config = vscode.workspace.getConfiguration('fp');
    const options = initializationOptions(readSettings((key) => config.get(key)));
    if (this.client?.state === State.Running) {
      void this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { fp: options } });
      this.log.info(`settings sent to fp-lsp: ${JSON.stringify(options)}`);
    }
  }

  setStatus(s: ServerStatus): void {
    this.status = s;
    const v = statusView(s);
    this.showState(v.text, v.tooltip);
  }

  private showState(text: string, tooltip: string): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.show();
  }

  private fail(problem: Problem): void {
    this.problem = problem;
    this.showState('$(error) fp: fp-lsp not running', `fp: ${problem.message} ${problem.hint}`.trim());
    void showProblem(this, problem);
  }
}

async function runPaletteCommand(fp: FpClient, cmd: PaletteCommand): Promise<void> {
  if (cmd.server === 'fp.attach') {
    await attach(fp);
    return;
  }
  if (!fp.serves(cmd.server)) {
    return;
  }
  let pid: number | undefined;
  if (cmd.target === 'process') {
    const chosen = await pickAttached(fp, cmd);
    if (chosen === 'cancelled') {
      return;
    }
    pid = chosen;
  }
  const built = commandArguments(cmd, editorContext(), pid);
  if (!built.ok) {
    void vscode.window.showWarningMessage(`fp: ${built.message}`);
    return;
  }
  const result = await fp.execute(cmd.server, built.args, cmd.title);
  if (result !== undefined) {
    report(fp, cmd.server, result);
  }
}

/** A command's result, in one line: the status bar for a moment, a warning for failures. */
function report(fp: FpClient, serverCommand: string, result: unknown): void {
  const o = outcome(serverCommand, result);
  fp.log.info(`${serverCommand}: ${o.message}`);
  if (o.level === 'warning') {
    const code = o.failures[0]?.code;
    void showError(fp, `fp: ${o.message}`, o.message, code, 'warning');
  } else {
    vscode.window.setStatusBarMessage(`fp: ${o.message}`, 8000);
  }
}

/**
 * The process a process command acts on: with one attached, that one (undefined: the server
 * takes every attached process); with several, a pick, "all" first where the command takes all.
 */
async function pickAttached(fp: FpClient, cmd: PaletteCommand): Promise<number | undefined | 'cancelled'> {
  const procs = fp.status.processes;
  if (procs.length <= 1) {
    return procs[0]?.pid;
  }
  const perProcess = cmd.server === 'fp.stack';
  type Item = vscode.QuickPickItem & { pid: number | undefined };
  const items: Item[] = [
    ...(perProcess ? [] : [{ label: 'All attached processes', pid: undefined }]),
    ...procs.map((p) => ({
      label: `${p.pid}`,
      description: [p.python === '' ? '' : `Python ${p.python}`, p.parent === undefined ? '' : `child of ${p.parent}`]
        .filter((x) => x !== '')
        .join(' · '),
      detail: p.cmdline,
      pid: p.pid,
    })),
  ];
  const picked = await vscode.window.showQuickPick(items, { title: `fp: ${cmd.title}`, placeHolder: 'Which process?' });
  return picked === undefined ? 'cancelled' : picked.pid;
}

const WITH_CHILDREN: vscode.QuickInputButton = {
  iconPath: new vscode.ThemeIcon('type-hierarchy-sub'),
  tooltip: 'Attach with child processes (the workers of a service)',
};

async function attach(fp: FpClient): Promise<void> {
  const answer = await fp.execute(LIST_PROCESSES, [], 'listing the processes');
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
    qp.placeholder = 'Filter by pid, command line or folder. Enter attaches; the row button attaches with child processes';
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
    const what = `attaching to process ${picked.item.pid}${picked.children ? ' and its children' : ''}`;
    const result = await fp.execute('fp.attach', attachArguments(picked.item.pid, picked.children), what);
    if (result !== undefined) {
      report(fp, 'fp.attach', result);
    }
  }
}

async function showActions(fp: FpClient): Promise<void> {
  const picked = await vscode.window.showQuickPick(statusActions(fp.status), {
    title: statusView(fp.status).tooltip.split('\n').slice(0, -1).join(' · '),
    placeHolder: 'fp',
  });
  if (picked !== undefined) {
    await vscode.commands.executeCommand(picked.command);
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

/** A server error: its message and remedy, the log keeping the remedy's lines as they were. */
async function showServerError(fp: FpClient, what: string, e: ServerError): Promise<void> {
  const logged = `${what} failed: ${e.message}${e.code === undefined ? '' : ` [${e.code}]`}${e.hint === '' ? '' : `\n${e.hint}`}`;
  await showError(fp, errorText(what, e), logged, e.code);
}

/** The notification with its buttons: the README section for the problem, and the log. */
async function showError(
  fp: FpClient,
  text: string,
  logged: string,
  code: string | undefined,
  level: 'error' | 'warning' = 'error',
): Promise<void> {
  if (level === 'error') {
    fp.log.error(logged);
  } else {
    fp.log.warn(logged);
  }
  const choice =
    level === 'error'
      ? await vscode.window.showErrorMessage(text, OPEN_README, SHOW_LOG)
      : await vscode.window.showWarningMessage(text, OPEN_README, SHOW_LOG);
  if (choice === OPEN_README) {
    await openReadme(fp, troubleshootingHeading(code));
  } else if (choice === SHOW_LOG) {
    fp.log.show(true);
  }
}

/** The extension's README (it ships in the .vsix), at the heading of the section. */
async function openReadme(fp: FpClient, heading: string): Promise<void> {
  const file = readmeFile(fp.extensionDir);
  if (file === undefined) {
    fp.log.error(`the extension's README is missing from ${fp.extensionDir}; its "${heading}" section explains the error`);
    fp.log.show(true);
    return;
  }
  const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
  const line = headingLine(doc.getText(), heading) ?? 0;
  const at = new vscode.Range(line, 0, line, 0);
  const editor = await vscode.window.showTextDocument(doc, { preview: true, selection: at });
  editor.revealRange(at, vscode.TextEditorRevealType.AtTop);
}

async function showProblem(fp: FpClient, problem: Problem): Promise<void> {
  fp.log.error(problem.hint === '' ? problem.message : `${problem.message} Fix: ${problem.hint}`);
  const choice = await vscode.window.showErrorMessage(
    `fp: ${problem.message} ${problem.hint}`.trim(),
    OPEN_SETTINGS,
    SHOW_LOG,
    OPEN_README,
  );
  if (choice === OPEN_SETTINGS) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'fp.serverPath');
  } else if (choice === SHOW_LOG) {
    fp.log.show(true);
  } else if (choice === OPEN_README) {
    await openReadme(fp, troubleshootingHeading('server'));
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

function plainError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
