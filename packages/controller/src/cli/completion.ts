import { Argument, type Command, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { helpFooter } from './help.js';

/** One command of the tree as completion sees it: its words, flags, and whether it takes a path. */
interface Node {
  path: string[];
  description: string;
  flags: { name: string; description: string }[];
  subcommands: Node[];
  /** Its first argument is a directory or file (deploy DIR, droplets import FILE). */
  takesPath: boolean;
}

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

function tree(command: CommandUnknownOpts, path: string[] = []): Node {
  const args = (command as unknown as { registeredArguments: readonly Argument[] }).registeredArguments;
  return {
    path,
    description: command.description(),
    flags: [...command.options.map((o) => ({ name: o.long ?? o.short ?? '', description: o.description })), { name: '--help', description: 'show help' }],
    subcommands: command.commands.map((c) => tree(c, [...path, c.name()])),
    takesPath: ['dir', 'file'].includes(args[0]?.name() ?? ''),
  };
}

function all(node: Node): Node[] {
  return [node, ...node.subcommands.flatMap(all)];
}

/** The words a shell offers at `node`: its subcommands, else its flags. */
const wordsAt = (node: Node) => [...node.subcommands.map((c) => c.path.at(-1) ?? ''), ...node.flags.map((f) => f.name)];
const key = (node: Node) => node.path.join(' ');
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** bash and zsh alike: the words typed before the cursor (`word` of `from` to `to`), kept while they name a command, make `key`. */
function commandWalk(nodes: Node[], range: { from: number; to: string; word: string }): string {
  const cases = nodes.filter((n) => n.path.length > 0).map((n) => `      ${quote(key(n))}) key=${quote(key(n))} ;;`);
  return [`  for ((i = ${range.from}; i < ${range.to}; i++)); do`, `    case "\${key:+$key }${range.word}" in`, ...cases, '    esac', '  done'].join('\n');
}

/**
 * A bash/zsh function walks the words typed so far, keeping those that name a (sub)command, and
 * offers what that command takes; generated from the command tree, so it never falls behind.
 */
function bash(root: Node): string {
  const nodes = all(root);
  const offers = nodes.map((n) => `    ${quote(key(n))}) words=${quote(wordsAt(n).join(' '))}${n.takesPath ? '; paths=1' : ''} ;;`);
  return `# plumb completion for bash: eval "$(plumb completion bash)" (e.g. in ~/.bashrc)
_plumb() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" key="" words="" paths=0 i
${commandWalk(nodes, { from: 1, to: 'COMP_CWORD', word: '\${COMP_WORDS[i]}' })}
  case "$key" in
${offers.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  if [[ $paths == 1 && $cur != -* ]]; then COMPREPLY+=($(compgen -f -- "$cur")); fi
}
complete -o filenames -F _plumb plumb
`;
}

function zsh(root: Node): string {
  const nodes = all(root);
  const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  const offers = nodes.map((n) => {
    const items = [...n.subcommands.map((c) => `${c.path.at(-1)}:${esc(c.description)}`), ...n.flags.map((f) => `${f.name}:${esc(f.description)}`)];
    return `    ${quote(key(n))}) items=(${items.map(quote).join(' ')})${n.takesPath ? '; paths=1' : ''} ;;`;
  });
  return `#compdef plumb
# plumb completion for zsh: plumb completion zsh > "\${fpath[1]}/_plumb" (then a new shell)
_plumb() {
  local key="" i paths=0
  local -a items
${commandWalk(nodes, { from: 2, to: 'CURRENT', word: '\${words[i]}' })}
  case "$key" in
${offers.join('\n')}
  esac
  _describe 'plumb' items
  (( paths )) && _files
}
# Autoloaded from fpath, the file is the function's body: complete now; sourced, register it.
if [[ $funcstack[1] == _plumb ]]; then _plumb "$@"; else compdef _plumb plumb; fi
`;
}

function fish(root: Node): string {
  const lines = ['# plumb completion for fish: plumb completion fish > ~/.config/fish/completions/plumb.fish', 'complete -c plumb -f'];
  for (const node of all(root)) {
    // fish's condition: every word of this command's path typed, and none of its subcommands yet.
    const seen = node.path.map((w) => `__fish_seen_subcommand_from ${w}`);
    const notYet = node.subcommands.length > 0 ? [`not __fish_seen_subcommand_from ${node.subcommands.map((c) => c.path.at(-1)).join(' ')}`] : [];
    const condition = node.path.length === 0 ? [...notYet.length ? ['__fish_use_subcommand'] : []] : [...seen, ...notYet];
    const when = condition.length > 0 ? ` -n ${quote(condition.join('; and '))}` : '';
    for (const sub of node.subcommands) lines.push(`complete -c plumb${when} -a ${quote(sub.path.at(-1) ?? '')} -d ${quote(sub.description)}`);
    if (node.path.length === 0) continue;
    for (const f of node.flags) if (f.name.startsWith('--')) lines.push(`complete -c plumb${when} -l ${f.name.slice(2)} -d ${quote(f.description)}`);
    if (node.takesPath) lines.push(`complete -c plumb${when} -F`);
  }
  return `${lines.join('\n')}\n`;
}

/** The completion script for `shell`, from the command tree as registered. */
export function completionScript(program: CommandUnknownOpts, shell: Shell): string {
  const root = tree(program);
  return shell === 'bash' ? bash(root) : shell === 'zsh' ? zsh(root) : fish(root);
}

export function register(program: Command) {
  const command = program
    .command('completion')
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    .description('print a completion script for bash, zsh or fish (commands, subcommands, flags)')
    .action((shell) => {
      process.stdout.write(completionScript(program, shell));
    });
  helpFooter(command, ['plumb completion bash > ~/.local/share/bash-completion/completions/plumb', 'plumb completion fish > ~/.config/fish/completions/plumb.fish']);
}
