/**
 * --env values that systemd's EnvironmentFile= parser could get wrong, with the line plumb renders
 * for each (renderUserEnv). The render tests check the lines; the end-to-end tests send the values
 * through a real deploy and read them back from R, through systemd's own parser.
 *
 * systemd.exec(5), EnvironmentFile=, and env-file.c: inside double quotes a backslash before one
 * of \ " ` $ yields that character; any other character, #, =, ', spaces and tabs included,
 * stands for itself; nothing is expanded ($HOME stays $HOME).
 */
export const envCases: [name: string, value: string, line: string][] = [
  ['spaces', '  two  spaces  ', 'SPACES="  two  spaces  "'],
  ['quotes', `say "hi" 'there'`, `QUOTES="say \\"hi\\" 'there'"`],
  ['backslashes', 'C:\\dir\\\\x\\', 'BACKSLASHES="C:\\\\dir\\\\\\\\x\\\\"'],
  ['dollar', '$HOME ${USER} $', 'DOLLAR="\\$HOME \\${USER} \\$"'],
  ['backtick', '`id`', 'BACKTICK="\\`id\\`"'],
  ['hash', '# not a comment', 'HASH="# not a comment"'],
  ['equals', 'a=b==', 'EQUALS="a=b=="'],
  ['semicolon', ';also not', 'SEMICOLON=";also not"'],
  ['tab', 'a\tb', 'TAB="a\tb"'],
  ['unicode', 'é😀\u0001', 'UNICODE="é😀\u0001"'],
  ['empty', '', 'EMPTY=""'],
];

/** Values refused before anything reaches a droplet: systemd would cut the line (or the file) there. */
export const refusedEnvValues = ['secret\nB=1', 'secret\rb', 'secret\0b'];
