// Keymaps of the tools (issues 4 and 5): the Resize view, the text input that edits a metadata value
// or the resize parameter, and the y/N confirmation; plus the bindings the file list and the detail
// add (r resize, H hashes, e/n/d metadata editing). keymap.ts puts them in its per-view tables, so
// the help bar, the `?` overlay and disabled reasons come from here.
import type {Binding, Keymap, Outcome} from './keymap.js';
import {cursorKey} from './state/detail-lines.js';
import {baseSlotServes, isRecipeChoice, needsBase, resizePreview, sessionBaseSlot} from './state/resize-preview.js';
import {isInside} from './state/reducer-tools.js';
import {selectedPath, selectedRow} from './state/selectors.js';
import type {AppState, ViewId} from './state/types.js';

// ---- file list and detail ----------------------------------------------------------------------

function fileReason(state: AppState, action: string): string | undefined {
	const row = selectedRow(state);
	if (!row) {
		return `${action}: select a file first`;
	}

	if (row.status === 'pending') {
		return `${action}: the file is still loading`;
	}

	return row.status === 'error' ? `${action}: this file could not be read` : undefined;
}

export const resizeOpenBinding: Binding = {
	keys: ['r'],
	label: 'resize',
	description: 'resize (reduce rank) of the selected file: live preview, then w writes',
	run: state => ({type: 'resize-open', path: selectedPath(state)!}),
	disabledReason(state) {
		const reason = fileReason(state, 'resize');
		if (reason !== undefined) {
			return reason;
		}

		const modules = selectedRow(state)?.entry?.model?.modules ?? [];
		return modules.some(m => m.algo === 'lora') ? undefined : 'resize: no LoRA (up/down) modules in this file';
	},
	// Resizing is a headline feature: users should see the key without opening help.
	onScreen: true,
};

export const hashBinding: Binding = {
	keys: ['H'],
	label: 'hashes',
	description: 'compute SHA-256, AutoV2 and the tensor-data hash, and check the stored sshs hashes (Overview; reads the whole file)',
	run: state => ({type: 'hash-request', path: selectedPath(state)!}),
	disabledReason: state => fileReason(state, 'hashes'),
};

function metadataKeyReason(state: AppState, action: string): string | undefined {
	if (state.detail.tab !== 'metadata') {
		return `${action}: only in the Metadata tab (2)`;
	}

	const reason = fileReason(state, action);
	if (reason !== undefined) {
		return reason;
	}

	return state.tools.save && (state.tools.save.state === 'queued' || state.tools.save.state === 'running' || state.tools.save.state === 'cancelling') ? `${action}: wait for the current save` : undefined;
}

function cursorMetadataKey(state: AppState): string | undefined {
	const key = cursorKey(state);
	const metadata = selectedRow(state)?.entry?.header?.metadata;
	return key !== undefined && metadata !== undefined && Object.hasOwn(metadata, key) ? key : undefined;
}

/** e / n / d on the Metadata tab. */
export const metadataEditBindings: Binding[] = [
	{
		keys: ['e'],
		label: 'edit value',
		description: 'edit the value under the cursor (saved into the file; its tensors are copied unchanged)',
		run: state => ({type: 'edit-open', mode: 'value', path: selectedPath(state)!, key: cursorMetadataKey(state)!}),
		disabledReason: state => metadataKeyReason(state, 'edit') ?? (cursorMetadataKey(state) === undefined ? 'edit: move the cursor to a key (j/k)' : undefined),
		onScreen: true,
	},
	{
		keys: ['n'],
		label: 'new key',
		description: 'add a metadata key (its name, then its value)',
		run: state => ({type: 'edit-open', mode: 'new-key', path: selectedPath(state)!}),
		disabledReason: state => metadataKeyReason(state, 'new key'),
		onScreen: true,
	},
	{
		keys: ['d'],
		label: 'delete key',
		description: 'delete the key under the cursor (asks first)',
		run: state => ({type: 'meta-delete-ask', path: selectedPath(state)!, key: cursorMetadataKey(state)!}),
		disabledReason: state => metadataKeyReason(state, 'delete') ?? (cursorMetadataKey(state) === undefined ? 'delete: move the cursor to a key (j/k)' : undefined),
		onScreen: true,
	},
];

// ---- the Resize view ---------------------------------------------------------------------------

function decompositionReason(state: AppState, action: string): string | undefined {
	const session = state.tools.resize;
	const slot = session ? state.tools.decompositions[session.key] : undefined;
	switch (slot?.state) {
		case 'done': {
			return undefined;
		}

		case 'error': {
			return `${action}: the decomposition failed (r retries)`;
		}

		case 'cancelled': {
			return `${action}: the decomposition was cancelled (r retries)`;
		}

		default: {
			return `${action}: wait for the decomposition`;
		}
	}
}

/** Why a checkpoint recipe cannot plan yet (its base norms), or undefined. */
function baseReason(state: AppState, action: string): string | undefined {
	const session = state.tools.resize;
	if (!session || !needsBase(session.choice)) {
		return undefined;
	}

	const slot = sessionBaseSlot(state);
	switch (slot?.state) {
		case 'done': {
			return baseSlotServes(slot, session.choice, state.tools.basePath) ? undefined : `${action}: wait for the base norms`;
		}

		case 'error': {
			return `${action}: the base norms failed (r retries)`;
		}

		case 'cancelled': {
			return `${action}: the base norms were cancelled (r computes them again)`;
		}

		default: {
			return `${action}: wait for the base norms`;
		}
	}
}

function writeReason(state: AppState): string | undefined {
	const reason = decompositionReason(state, 'write') ?? baseReason(state, 'write');
	if (reason !== undefined) {
		return reason;
	}

	const write = state.tools.resize?.write;
	if (write && (write.state === 'queued' || write.state === 'running' || write.state === 'cancelling')) {
		return 'write: already writing';
	}

	const preview = resizePreview(state);
	if (preview.state === 'invalid') {
		return `write: ${preview.error}`;
	}

	if (preview.state === 'ready' && preview.plan.totals.resized + preview.plan.totals.kept + preview.plan.totals.removed === 0) {
		return 'write: nothing to resize (every module would be copied unchanged)';
	}

	return undefined;
}

function compareOutputReason(state: AppState): string | undefined {
	const session = state.tools.resize;
	const output = session?.output;
	if (!session || !output) {
		return 'compare: write the file first (w)';
	}

	if (!isInside(state.folder, output)) {
		return 'compare: the output is outside the opened folder';
	}

	if (state.rows.get(output)?.status !== 'ok' || state.rows.get(session.path)?.status !== 'ok') {
		return 'compare: waiting for the new file to appear in the list';
	}

	return undefined;
}

function retryReason(state: AppState): string | undefined {
	const session = state.tools.resize;
	const slot = session ? state.tools.decompositions[session.key] : undefined;
	if (slot?.state === 'error' || slot?.state === 'cancelled') {
		return undefined;
	}

	const base = sessionBaseSlot(state);
	const baseRetry = session && needsBase(session.choice) && (base?.state === 'error' || base?.state === 'cancelled');
	return baseRetry ? undefined : 'retry: only after a cancelled or failed decomposition or base norms';
}

function selectorReason(state: AppState): string | undefined {
	const choice = state.tools.resize?.choice;
	return choice && isRecipeChoice(choice) ? undefined : 'thr/size: only the elias recipes (spn_lora, fro_lora, spn_ckpt, fro_ckpt) select by size (m picks one)';
}

const scrollBindings: Binding[] = [
	{keys: ['down', 'j'], keyLabel: '↓/j', label: 'scroll', run: () => ({type: 'resize-scroll', delta: 1})},
	{keys: ['up', 'k'], keyLabel: '↑/k', label: 'scroll up', run: () => ({type: 'resize-scroll', delta: -1})},
	{keys: ['pagedown', 'ctrl+d'], keyLabel: 'PgDn', label: 'page down', run: state => ({type: 'resize-scroll', delta: Math.max(1, state.viewport.bodyRows - 10)})},
	{keys: ['pageup', 'ctrl+u'], keyLabel: 'PgUp', label: 'page up', run: state => ({type: 'resize-scroll', delta: -Math.max(1, state.viewport.bodyRows - 10)})},
	{keys: ['g', 'home'], keyLabel: 'g', label: 'top', run: state => ({type: 'resize-scroll', delta: -(state.tools.resize?.scroll ?? 0)})},
];

export const resizeKeymap: Keymap = {
	bindings: [
		{keys: ['left', 'h'], keyLabel: '←/→', label: 'adjust', description: 'parameter down by a fine step', run: () => ({type: 'resize-step', direction: -1, coarse: false}), onScreen: true},
		{keys: ['right', 'l'], keyLabel: '→', label: 'parameter up', description: 'parameter up by a fine step', run: () => ({type: 'resize-step', direction: 1, coarse: false})},
		{keys: ['shift+left', '['], keyLabel: '[ ]', label: 'coarse', description: 'parameter down by a coarse step (also shift+←)', run: () => ({type: 'resize-step', direction: -1, coarse: true}), onScreen: true},
		{keys: ['shift+right', ']'], keyLabel: ']', label: 'coarse up', description: 'parameter up by a coarse step (also shift+→)', run: () => ({type: 'resize-step', direction: 1, coarse: true})},
		{
			keys: ['m'],
			label: 'method',
			description: 'next method: rank, sv_ratio, sv_fro, sv_cumulative, spn_lora, fro_lora, and fro_ckpt, spn_ckpt when started with --base',
			run: () => ({type: 'resize-choice', delta: 1}),
			onScreen: true,
		},
		{keys: ['M'], label: 'previous method', run: () => ({type: 'resize-choice', delta: -1})},
		{
			keys: ['s'],
			label: 'thr/size',
			description: 'elias recipes: select by score threshold (log10) or by a size target in MiB (highest scores first)',
			run: () => ({type: 'resize-selector'}),
			disabledReason: selectorReason,
			onScreen: true,
		},
		{keys: ['='], label: 'type value', description: 'type the parameter', run: () => ({type: 'edit-param-open'}), onScreen: true},
		{
			keys: ['w'],
			label: 'write',
			description: 'write the resized file next to the source (or into --out); asks before replacing a file',
			run: () => ({type: 'resize-write', overwrite: false}),
			disabledReason: writeReason,
			onScreen: true,
		},
		{
			keys: ['c'],
			label: 'compare',
			description: 'compare the written file with its source',
			run(state): Outcome | undefined {
				const session = state.tools.resize;
				return session?.output ? {type: 'compare-open', paths: [session.path, session.output]} : undefined;
			},
			disabledReason: compareOutputReason,
			onScreen: true,
		},
		{keys: ['r'], label: 'retry', description: 'decompose (or compute the base norms) again after a cancel or a failure', run: () => ({type: 'resize-retry'}), disabledReason: retryReason},
		...scrollBindings,
		{keys: ['escape'], keyLabel: 'esc', label: 'back', description: 'cancel the running job, or go back', run: () => ({type: 'resize-escape'}), onScreen: true},
	],
};

// ---- text input and confirmation -----------------------------------------------------------------

export const editKeymap: Keymap = {
	bindings: [
		{keys: ['return'], keyLabel: '↵', label: 'save', description: 'save the value into the file (a parameter: apply it)', run: () => ({type: 'edit-commit'}), onScreen: true},
		{keys: ['escape'], keyLabel: 'esc', label: 'cancel', run: () => ({type: 'edit-cancel'}), onScreen: true},
		{keys: ['backspace'], keyLabel: '⌫', label: 'delete', run: () => ({type: 'edit-backspace'})},
		{keys: ['left'], keyLabel: '←/→', label: 'move', description: 'move the cursor', run: () => ({type: 'edit-cursor', to: 'left'}), onScreen: true},
		{keys: ['right'], keyLabel: '→', label: 'right', run: () => ({type: 'edit-cursor', to: 'right'})},
		{keys: ['up'], keyLabel: '↑/↓', label: 'row up', description: 'cursor one row up (long values)', run: () => ({type: 'edit-cursor', to: 'up'})},
		{keys: ['down'], keyLabel: '↓', label: 'row down', description: 'cursor one row down', run: () => ({type: 'edit-cursor', to: 'down'})},
		{keys: ['home', 'ctrl+a'], keyLabel: 'C-a', label: 'start', run: () => ({type: 'edit-cursor', to: 'home'})},
		{keys: ['end', 'ctrl+e'], keyLabel: 'C-e', label: 'end', run: () => ({type: 'edit-cursor', to: 'end'})},
		{keys: ['ctrl+u'], keyLabel: 'C-u', label: 'clear', run: () => ({type: 'edit-clear'}), onScreen: true},
	],
	onText(_state, text) {
		// Only printable text is typed; control characters (a pasted escape sequence) are dropped.
		const printable = [...text].filter(ch => ch >= ' ' && ch !== '\u007F' && !(ch >= '\u0080' && ch <= '\u009F')).join('');
		return printable === '' ? undefined : [{type: 'edit-insert', text: printable}];
	},
	modal: true,
};

const declineKeys = ['n', 'N', 'escape', 'return', 'space', 'up', 'down', 'left', 'right', 'tab', 'shift+tab', 'backspace', 'pageup', 'pagedown', 'home', 'end'];

export const confirmKeymap: Keymap = {
	bindings: [
		{keys: ['y', 'Y'], label: 'yes', run: () => ({type: 'confirm-answer', yes: true}), onScreen: true},
		{keys: declineKeys, keyLabel: 'other', label: 'no', description: 'any other key: no', run: () => ({type: 'confirm-answer', yes: false}), onScreen: true},
	],
	onText: () => [{type: 'confirm-answer', yes: false}],
	modal: true,
};

export const toolViewTitles = {
	resize: 'Resize',
	'edit-value': 'Edit value',
	confirm: 'Confirm',
} as const satisfies Partial<Record<ViewId, string>>;

/** Views where keys are typed text (a paste arrives as one piece). */
export function isTypingView(view: ViewId): boolean {
	return view === 'input' || view === 'edit-value';
}
