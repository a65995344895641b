// What the terminal can show, from the environment: a UTF-8 locale allows box drawing and block
// glyphs (ASCII otherwise), and NO_COLOR (https://no-color.org: set and not empty) or a dumb/non-TTY
// terminal turns colours off.
import type {TerminalEnv} from './types.js';

export function detectTerminalEnv(vars: Readonly<Record<string, string | undefined>>, isTTY: boolean): TerminalEnv {
	// The first of these that is set decides, as in setlocale(3).
	const locale = [vars['LC_ALL'], vars['LC_CTYPE'], vars['LANG']].find(value => value !== undefined && value !== '') ?? '';
	const unicode = /utf-?8/i.test(locale);
	const noColor = vars['NO_COLOR'] !== undefined && vars['NO_COLOR'] !== '';
	return {unicode, color: isTTY && !noColor && vars['TERM'] !== 'dumb'};
}
