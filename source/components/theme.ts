// Semantic colours: every role the line builders use maps to one Ink colour. Under NO_COLOR (or
// without a TTY) no colour is set at all; emphasis then comes from bold, inverse and glyphs only.
import type {Role} from '../state/lines.js';
import type {TerminalEnv} from '../state/types.js';

type Style = {color?: string; bold?: boolean; dimColor?: boolean; inverse?: boolean};

const palette = {
	text: {},
	dim: {dimColor: true},
	label: {color: 'cyan'},
	value: {},
	heading: {bold: true},
	ok: {color: 'green'},
	warn: {color: 'yellow'},
	error: {color: 'red'},
	accent: {color: 'magenta'},
	bar: {color: 'blue'},
	'bar-alt': {color: 'cyan'},
	added: {color: 'green'},
	removed: {color: 'red'},
	changed: {color: 'yellow'},
	match: {color: 'yellow', bold: true},
	picked: {color: 'green', bold: true},
	selected: {inverse: true, bold: true},
} satisfies Record<Role, Style>;

const noColor: Record<Role, Style> = {
	text: {},
	dim: {},
	label: {},
	value: {},
	heading: {bold: true},
	ok: {},
	warn: {bold: true},
	error: {bold: true},
	accent: {bold: true},
	bar: {},
	'bar-alt': {},
	added: {},
	removed: {},
	changed: {bold: true},
	match: {bold: true},
	picked: {bold: true},
	selected: {inverse: true, bold: true},
};

export function styleOf(role: Role | undefined, env: TerminalEnv): Style {
	if (role === undefined) {
		return {};
	}

	return env.color ? palette[role] : noColor[role];
}

export const borderColors = {focused: 'cyan', blurred: 'gray'} as const;

export function borderColor(focused: boolean, env: TerminalEnv): string | undefined {
	if (!env.color) {
		return undefined;
	}

	return focused ? borderColors.focused : borderColors.blurred;
}
