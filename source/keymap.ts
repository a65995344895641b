// One keymap table per view: the single source of truth for what each key does, the help bar, the `?`
// overlay and the reason a key cannot act right now. `routeKey` is the one router: it sends a key to
// the view on top of the stack, then to the global bindings, and returns what should happen as data
// (reducer actions and effects), so it is unit-tested without rendering.
import type {Action} from './state/reducer.js';
import {confirmKeymap, editKeymap, hashBinding, metadataEditBindings, resizeKeymap, resizeOpenBinding, toolViewTitles} from './keymap-tools.js';
import {cursorKey} from './state/detail-lines.js';
import {compareChoice, previousEpochChoice, topView} from './state/selectors.js';
import {tagOfKey} from './state/tab-tags.js';
import {tabIds, tabTitles, type AppState, type TabId, type ViewId} from './state/types.js';

/** A key as the router sees it: a name ('j', 'G', 'up', 'return', 'ctrl+c', 'space', 'shift+tab') and its text. */
export type KeyPress = {name: string; text: string};

/** Side effects the app performs for a binding; everything else is a reducer action. */
export type Effect = {kind: 'quit'} | {kind: 'copy'; text: string; what: string};

export type Outcome = Action | Effect;

export type Binding = {
	keys: readonly string[];
	/** How the keys are written in the help bar and overlay (defaults to the first key). */
	keyLabel?: string;
	/** Short label for the help bar. */
	label: string;
	/** Longer text for the `?` overlay (defaults to the label). */
	description?: string;
	run: (state: AppState) => Outcome | Outcome[] | undefined;
	/** Why the key cannot act now; the router shows it in the status line instead of running. */
	disabledReason?: (state: AppState) => string | undefined;
	/** Listed in the bottom help bar when enabled. */
	onScreen?: boolean;
};

export type Keymap = {
	bindings: readonly Binding[];
	/** Printable text that no binding claimed (the input view types it). */
	onText?: (state: AppState, text: string) => Outcome[] | undefined;
	/** A modal view takes every key: global bindings other than Ctrl+C do not apply underneath. */
	modal?: boolean;
};

export type RouteContext = {
	/** The too-small screen is up: only quitting works. */
	tooSmall?: boolean;
};

export type RouteResult = {outcomes: Outcome[]; handled: boolean};

// ---- key names --------------------------------------------------------------------------------

/** The subset of Ink's Key that the router reads. */
export type InkKeyLike = {
	upArrow: boolean;
	downArrow: boolean;
	leftArrow: boolean;
	rightArrow: boolean;
	pageUp: boolean;
	pageDown: boolean;
	home?: boolean;
	end?: boolean;
	return: boolean;
	escape: boolean;
	ctrl: boolean;
	shift: boolean;
	tab: boolean;
	backspace: boolean;
	delete: boolean;
	meta: boolean;
};

export function keyPressFrom(input: string, key: InkKeyLike): KeyPress {
	const named = (name: string): KeyPress => ({name, text: ''});
	if (key.upArrow) {
		return named('up');
	}

	if (key.downArrow) {
		return named('down');
	}

	if (key.leftArrow) {
		return named(key.shift ? 'shift+left' : 'left');
	}

	if (key.rightArrow) {
		return named(key.shift ? 'shift+right' : 'right');
	}

	if (key.pageUp) {
		return named('pageup');
	}

	if (key.pageDown) {
		return named('pagedown');
	}

	if (key.home) {
		return named('home');
	}

	if (key.end) {
		return named('end');
	}

	if (key.return) {
		return named('return');
	}

	if (key.tab) {
		return named(key.shift ? 'shift+tab' : 'tab');
	}

	if (key.backspace || key.delete) {
		return named('backspace');
	}

	if (key.escape) {
		return named('escape');
	}

	if (key.ctrl && input.length === 1) {
		return named(`ctrl+${input.toLowerCase()}`);
	}

	if (input === ' ') {
		return {name: 'space', text: ' '};
	}

	return {name: input, text: input};
}

/** One character of a multi-key chunk as the router names it. */
function charPress(ch: string): KeyPress {
	const code = ch.codePointAt(0) ?? 0;
	switch (ch) {
		case '\t': {
			return {name: 'tab', text: ''};
		}

		case '\r':
		case '\n': {
			return {name: 'return', text: ''};
		}

		case '\u007F':
		case '\b': {
			return {name: 'backspace', text: ''};
		}

		case ' ': {
			return {name: 'space', text: ' '};
		}

		default: {
			if (code >= 1 && code <= 26) {
				return {name: `ctrl+${String.fromCharCode(code + 96)}`, text: ''};
			}

			return code < 0x20 ? {name: `control-${code}`, text: ''} : {name: ch, text: ch};
		}
	}
}

/**
 * Ink hands a chunk of several characters over as one input (it assumes a paste). Keys typed fast,
 * key repeat and tmux send-keys arrive that way too, so outside a text input each character is a key.
 */
export function keyPressesFrom(input: string, key: InkKeyLike, typingText: boolean): KeyPress[] {
	const chars = [...input];
	const special = key.upArrow || key.downArrow || key.leftArrow || key.rightArrow || key.pageUp || key.pageDown || key.return || key.tab || key.escape || key.backspace || key.delete;
	if (chars.length <= 1 || special || input.includes('\u001B')) {
		return [keyPressFrom(input, key)];
	}

	// A paste into the filter or a search is text (its control characters are dropped by the input view).
	if (typingText && !/[\r\n\t]/.test(input)) {
		return [{name: input, text: input}];
	}

	return chars.map(ch => charPress(ch));
}

// ---- helpers ----------------------------------------------------------------------------------

const noFile = (state: AppState): string | undefined => (state.order.length === 0 ? 'no files listed' : undefined);

function onTab(tab: TabId, action: string) {
	return (state: AppState): string | undefined => (state.detail.tab === tab ? undefined : `${action}: only in the ${tabTitles[tab]} tab (${tabIds.indexOf(tab) + 1})`);
}

function copyTags(state: AppState): Outcome | undefined {
	const picked = state.detail.tagsSelected;
	const tags = picked.length > 0 ? picked : [tagOfKey(cursorKey(state))].filter((tag): tag is string => tag !== undefined);
	if (tags.length === 0) {
		return {type: 'status', status: {text: 'copy: move to a tag or pick tags with space', level: 'warn'}};
	}

	return {kind: 'copy', text: tags.join(', '), what: tags.length === 1 ? '1 tag' : `${tags.length} tags`};
}

const tabBindings: Binding[] = [
	{keys: ['tab'], keyLabel: 'tab', label: 'next tab', run: () => ({type: 'tab-cycle', delta: 1}), onScreen: true},
	{keys: ['shift+tab'], keyLabel: 'S-tab', label: 'previous tab', run: () => ({type: 'tab-cycle', delta: -1})},
	...tabIds.map(
		(tab, index): Binding => ({
			keys: [String(index + 1)],
			keyLabel: index === 0 ? '1-5' : String(index + 1),
			label: tabTitles[tab],
			description: `${tabTitles[tab]} tab`,
			run: () => ({type: 'tab-set', tab}),
		}),
	),
];

const compareBindings: Binding[] = [
	{
		keys: ['c'],
		label: 'compare',
		description: 'compare the marked files (two: diff; 3+ epochs of one run: chart)',
		run(state) {
			const choice = compareChoice(state);
			return choice.paths ? {type: 'compare-open', paths: choice.paths} : undefined;
		},
		disabledReason: state => compareChoice(state).reason,
		onScreen: true,
	},
	{
		keys: ['p'],
		label: 'vs prev epoch',
		description: 'compare the selected file with the previous epoch of its run',
		run(state) {
			const choice = previousEpochChoice(state);
			return choice.paths ? {type: 'compare-open', paths: choice.paths} : undefined;
		},
		disabledReason: state => previousEpochChoice(state).reason,
	},
];

// The Resize view (issue 4): keymap-tools.ts.
const resizeBinding: Binding = resizeOpenBinding;

// ---- per-view keymaps -------------------------------------------------------------------------

const filesKeymap: Keymap = {
	bindings: [
		{keys: ['down', 'j'], keyLabel: '↓/j', label: 'down', run: () => ({type: 'move', delta: 1})},
		{keys: ['up', 'k'], keyLabel: '↑/k', label: 'up', run: () => ({type: 'move', delta: -1})},
		{keys: ['pagedown', 'ctrl+d'], keyLabel: 'PgDn', label: 'page down', run: () => ({type: 'move-page', direction: 1})},
		{keys: ['pageup', 'ctrl+u'], keyLabel: 'PgUp', label: 'page up', run: () => ({type: 'move-page', direction: -1})},
		{keys: ['g', 'home'], keyLabel: 'g', label: 'first', run: () => ({type: 'move-edge', edge: 'first'})},
		{keys: ['G', 'end'], keyLabel: 'G', label: 'last', run: () => ({type: 'move-edge', edge: 'last'})},
		{
			keys: ['return', 'l', 'right'],
			keyLabel: '↵',
			label: 'open',
			description: 'open the detail of the selected file',
			run: () => ({type: 'push-view', view: 'detail'}),
			disabledReason: state => (noFile(state) ? 'open: no file selected' : undefined),
			onScreen: true,
		},
		...tabBindings,
		{keys: ['/'], label: 'filter', description: 'filter: text, field:value, rank>=32, arch:sdxl, is:new', run: () => ({type: 'input-open', target: 'filter'}), onScreen: true},
		{
			keys: ['escape'],
			keyLabel: 'esc',
			label: 'clear filter',
			run: state => (state.filter.source === '' ? undefined : {type: 'filter-set', text: ''}),
		},
		{keys: ['s'], label: 'sort', description: 'sort by the next key (modified, name, size, rank, epoch)', run: () => ({type: 'sort-next'}), onScreen: true},
		{keys: ['S'], label: 'reverse sort', run: () => ({type: 'sort-reverse'})},
		{
			keys: ['space'],
			keyLabel: 'space',
			label: 'mark',
			description: 'mark or unmark the selected file (for compare)',
			run: () => ({type: 'toggle-mark'}),
			disabledReason: state => (noFile(state) ? 'mark: no file selected' : undefined),
			onScreen: true,
		},
		{
			keys: ['u'],
			label: 'unmark all',
			run: () => ({type: 'clear-marks'}),
			disabledReason: state => (state.marks.length === 0 ? 'unmark: nothing is marked' : undefined),
		},
		...compareBindings,
		resizeBinding,
		hashBinding,
	],
};

const detailKeymap: Keymap = {
	bindings: [
		{keys: ['down', 'j'], keyLabel: '↓/j', label: 'down', run: () => ({type: 'detail-move', delta: 1})},
		{keys: ['up', 'k'], keyLabel: '↑/k', label: 'up', run: () => ({type: 'detail-move', delta: -1})},
		{keys: ['pagedown', 'ctrl+d'], keyLabel: 'PgDn', label: 'page down', run: () => ({type: 'detail-page', direction: 1})},
		{keys: ['pageup', 'ctrl+u'], keyLabel: 'PgUp', label: 'page up', run: () => ({type: 'detail-page', direction: -1})},
		{keys: ['g', 'home'], keyLabel: 'g', label: 'top', run: () => ({type: 'detail-edge', edge: 'first'})},
		{keys: ['G', 'end'], keyLabel: 'G', label: 'bottom', run: () => ({type: 'detail-edge', edge: 'last'})},
		{keys: ['escape', 'h', 'left'], keyLabel: 'esc', label: 'back', description: 'back to the file list', run: () => ({type: 'pop-view'}), onScreen: true},
		...tabBindings,
		{
			keys: ['/'],
			label: 'search',
			description: 'search the Metadata or Tags tab',
			run: state => ({type: 'input-open', target: state.detail.tab === 'tags' ? 'tags-search' : 'metadata-search'}),
			disabledReason: state => (state.detail.tab === 'metadata' || state.detail.tab === 'tags' ? undefined : 'search: only in the Metadata (2) and Tags (3) tabs'),
			onScreen: true,
		},
		{
			keys: ['i'],
			label: 'explain',
			description: 'show every field definition (the one under the cursor is always at the bottom)',
			run: () => ({type: 'explain-toggle'}),
			disabledReason: onTab('overview', 'explain'),
			onScreen: true,
		},
		{
			keys: ['space'],
			keyLabel: 'space',
			label: 'pick tag',
			description: 'pick the tag under the cursor for copying',
			run(state) {
				const tag = tagOfKey(cursorKey(state));
				return tag === undefined ? {type: 'status', status: {text: 'pick: move the cursor to a tag', level: 'warn'}} : {type: 'tags-select-toggle', tag};
			},
			disabledReason: onTab('tags', 'pick tag'),
			onScreen: true,
		},
		{
			keys: ['y'],
			label: 'copy tags',
			description: 'copy the picked tags (or the one under the cursor) to the clipboard (OSC 52, works over SSH)',
			run: copyTags,
			disabledReason: onTab('tags', 'copy'),
			onScreen: true,
		},
		{
			keys: ['x'],
			label: 'clear picks',
			run: () => ({type: 'tags-select-clear'}),
			disabledReason: state => onTab('tags', 'clear picks')(state) ?? (state.detail.tagsSelected.length === 0 ? 'clear picks: no tags picked' : undefined),
		},
		{
			keys: ['m'],
			label: 'merged/per dir',
			description: 'tags merged across dataset dirs, or per dir',
			run: () => ({type: 'tags-mode-toggle'}),
			disabledReason: onTab('tags', 'merged/per dir'),
			onScreen: true,
		},
		{
			keys: ['o'],
			label: 'sort modules',
			description: 'sort the module table by block or by norm',
			run: () => ({type: 'modules-sort-toggle'}),
			disabledReason: onTab('blocks', 'sort modules'),
			onScreen: true,
		},
		...compareBindings,
		resizeBinding,
		hashBinding,
		...metadataEditBindings,
	],
};

const compareKeymap: Keymap = {
	bindings: [
		{keys: ['escape', 'h', 'q'], keyLabel: 'esc', label: 'back', run: () => ({type: 'pop-view'}), onScreen: true},
		{keys: ['down', 'j'], keyLabel: '↓/j', label: 'scroll', run: () => ({type: 'compare-move', delta: 1}), onScreen: true},
		{keys: ['up', 'k'], keyLabel: '↑/k', label: 'scroll up', run: () => ({type: 'compare-move', delta: -1})},
		{keys: ['pagedown'], keyLabel: 'PgDn', label: 'page down', run: state => ({type: 'compare-move', delta: Math.max(1, state.viewport.bodyRows - 4)})},
		{keys: ['pageup'], keyLabel: 'PgUp', label: 'page up', run: state => ({type: 'compare-move', delta: -Math.max(1, state.viewport.bodyRows - 4)})},
		{
			keys: ['right', 'l'],
			keyLabel: '←/→',
			label: 'block',
			description: 'epoch chart: next block',
			run: () => ({type: 'compare-block', delta: 1}),
			disabledReason: state => ((state.compare?.paths.length ?? 0) >= 3 ? undefined : 'block: the epoch chart needs 3+ files of one run'),
			onScreen: true,
		},
		{
			keys: ['left'],
			label: 'previous block',
			run: () => ({type: 'compare-block', delta: -1}),
			disabledReason: state => ((state.compare?.paths.length ?? 0) >= 3 ? undefined : 'block: the epoch chart needs 3+ files of one run'),
		},
	],
};

const helpKeymap: Keymap = {
	bindings: [
		{keys: ['escape', '?', 'q', 'return'], keyLabel: 'esc', label: 'close help', run: () => ({type: 'pop-view'}), onScreen: true},
		{keys: ['down', 'j'], keyLabel: '↓/j', label: 'scroll', run: () => ({type: 'help-scroll', delta: 1}), onScreen: true},
		{keys: ['up', 'k'], keyLabel: '↑/k', label: 'scroll up', run: () => ({type: 'help-scroll', delta: -1})},
		{keys: ['pagedown'], keyLabel: 'PgDn', label: 'page down', run: state => ({type: 'help-scroll', delta: Math.max(1, state.viewport.bodyRows - 2)})},
		{keys: ['pageup'], keyLabel: 'PgUp', label: 'page up', run: state => ({type: 'help-scroll', delta: -Math.max(1, state.viewport.bodyRows - 2)})},
	],
	modal: true,
};

const logKeymap: Keymap = {
	bindings: [
		{keys: ['escape', 'L', 'q'], keyLabel: 'esc', label: 'close log', run: () => ({type: 'pop-view'}), onScreen: true},
		{keys: ['down', 'j'], keyLabel: '↓/j', label: 'scroll', run: () => ({type: 'log-scroll', delta: 1}), onScreen: true},
		{keys: ['up', 'k'], keyLabel: '↑/k', label: 'scroll up', run: () => ({type: 'log-scroll', delta: -1})},
	],
};

const inputKeymap: Keymap = {
	bindings: [
		{keys: ['return'], keyLabel: '↵', label: 'apply', run: () => ({type: 'input-commit'}), onScreen: true},
		{keys: ['escape'], keyLabel: 'esc', label: 'cancel', run: () => ({type: 'input-cancel'}), onScreen: true},
		{keys: ['backspace'], keyLabel: '⌫', label: 'delete', run: state => ({type: 'input-text', text: [...(state.input?.text ?? '')].slice(0, -1).join('')})},
		{keys: ['ctrl+u'], keyLabel: 'C-u', label: 'clear', run: () => ({type: 'input-text', text: ''}), onScreen: true},
		// Arrows leave the input and move the list, so the user can filter and browse in one go.
		{keys: ['down'], keyLabel: '↓', label: 'apply and move', run: state => [{type: 'input-commit'}, state.input?.target === 'filter' ? {type: 'move', delta: 1} : {type: 'detail-move', delta: 1}]},
		{keys: ['up'], keyLabel: '↑', label: 'apply and move up', run: state => [{type: 'input-commit'}, state.input?.target === 'filter' ? {type: 'move', delta: -1} : {type: 'detail-move', delta: -1}]},
	],
	onText(state, text) {
		// Only printable text is typed; control characters from a paste are dropped.
		const printable = [...text].filter(ch => ch >= ' ' && ch !== '\u007F').join('');
		return printable === '' ? undefined : [{type: 'input-text', text: (state.input?.text ?? '') + printable}];
	},
	modal: true,
};

export const viewTitles: Readonly<Record<ViewId, string>> = {
	files: 'File list',
	detail: 'Detail',
	compare: 'Compare',
	help: 'Help',
	input: 'Text input',
	log: 'Engine log',
	...toolViewTitles,
};

export const keymaps: Readonly<Record<ViewId, Keymap>> = {
	files: filesKeymap,
	detail: detailKeymap,
	compare: compareKeymap,
	help: helpKeymap,
	input: inputKeymap,
	log: logKeymap,
	resize: resizeKeymap,
	'edit-value': editKeymap,
	confirm: confirmKeymap,
};

export const globalBindings: readonly Binding[] = [
	{keys: ['?'], label: 'help', description: 'every key of the current view', run: () => ({type: 'push-view', view: 'help'}), onScreen: true},
	{keys: ['L'], label: 'engine log', description: 'log of the engine (device, warnings)', run: () => ({type: 'push-view', view: 'log'})},
	{keys: ['q'], label: 'quit', run: () => ({kind: 'quit'}), onScreen: true},
	{keys: ['ctrl+c'], keyLabel: 'C-c', label: 'quit', run: () => ({kind: 'quit'})},
];

const quitKeys = new Set(['q', 'ctrl+c']);

function asList(outcome: Outcome | Outcome[] | undefined): Outcome[] {
	if (outcome === undefined) {
		return [];
	}

	return Array.isArray(outcome) ? outcome : [outcome];
}

function runBinding(binding: Binding, state: AppState): Outcome[] {
	const reason = binding.disabledReason?.(state);
	if (reason !== undefined) {
		return [{type: 'status', status: {text: reason, level: 'warn'}}];
	}

	return asList(binding.run(state));
}

/** Routes one key: top view first, then (unless the view is modal) the global bindings. */
export function routeKey(state: AppState, press: KeyPress, context: RouteContext = {}): RouteResult {
	// Any key clears a status message, as gh-dash does; a binding may set a new one.
	const prefix: Outcome[] = state.status ? [{type: 'status', status: null}] : [];
	if (context.tooSmall) {
		const quit = quitKeys.has(press.name) && topView(state) !== 'input';
		return {outcomes: quit || press.name === 'ctrl+c' ? [{kind: 'quit'}] : prefix, handled: quit || press.name === 'ctrl+c'};
	}

	const view = topView(state);
	const keymap = keymaps[view];
	const binding = keymap.bindings.find(b => b.keys.includes(press.name));
	if (binding) {
		return {outcomes: [...prefix, ...runBinding(binding, state)], handled: true};
	}

	if (keymap.onText && press.text !== '' && press.name !== 'ctrl+c') {
		const typed = keymap.onText(state, press.text);
		if (typed) {
			return {outcomes: [...prefix, ...typed], handled: true};
		}
	}

	const global = globalBindings.find(b => b.keys.includes(press.name) && (!keymap.modal || b.keys.includes('ctrl+c')));
	if (global) {
		return {outcomes: [...prefix, ...runBinding(global, state)], handled: true};
	}

	return {outcomes: prefix, handled: false};
}

export function isEffect(outcome: Outcome): outcome is Effect {
	return 'kind' in outcome;
}

// ---- help bar and overlay ---------------------------------------------------------------------

export type HelpItem = {key: string; label: string};

function keyLabelOf(binding: Binding): string {
	return binding.keyLabel ?? binding.keys[0] ?? '';
}

/** The bottom bar: enabled on-screen keys of the focused view, then the global ones. */
export function helpBarItems(state: AppState): HelpItem[] {
	const view = topView(state);
	const keymap = keymaps[view];
	const own = keymap.bindings.filter(b => b.onScreen && b.disabledReason?.(state) === undefined);
	const global = keymap.modal ? [] : globalBindings.filter(b => b.onScreen);
	return [...own, ...global].map(b => ({key: keyLabelOf(b), label: b.label}));
}

export type HelpRow = {key: string; label: string; disabled?: string};
export type HelpSection = {title: string; rows: HelpRow[]};

/** The `?` overlay: every key of the view under it, with why disabled ones cannot act, then global keys. */
export function helpSections(state: AppState, view: ViewId): HelpSection[] {
	const rows = (bindings: readonly Binding[]): HelpRow[] => {
		const out: HelpRow[] = [];
		for (const b of bindings) {
			// The five tab keys are one row.
			if (/^[2-5]$/.test(b.keys[0] ?? '') && b.keys.length === 1) {
				continue;
			}

			const label = b.keys[0] === '1' ? 'Overview, Metadata, Tags, Dataset, Blocks tab' : (b.description ?? b.label);
			const disabled = b.disabledReason?.(state);
			out.push(disabled === undefined ? {key: keyLabelOf(b), label} : {key: keyLabelOf(b), label, disabled});
		}

		return out;
	};

	return [
		{title: viewTitles[view], rows: rows(keymaps[view].bindings)},
		{title: 'Everywhere', rows: rows(globalBindings)},
	];
}
