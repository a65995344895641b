import assert from 'node:assert/strict';
import {test} from 'node:test';
import {globalBindings, helpBarItems, helpSections, isEffect, keymaps, keyPressesFrom, keyPressFrom, routeKey, viewTitles, type InkKeyLike, type KeyPress, type Outcome} from '../source/keymap.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import {selectedPath, topView} from '../source/state/selectors.js';
import type {AppState, ViewId} from '../source/state/types.js';
import {fakeEntry, unicodeEnv} from './helpers/entries.js';

const folder = '/f';
const noKey: InkKeyLike = {upArrow: false, downArrow: false, leftArrow: false, rightArrow: false, pageUp: false, pageDown: false, home: false, end: false, return: false, escape: false, ctrl: false, shift: false, tab: false, backspace: false, delete: false, meta: false};

function press(name: string): KeyPress {
	return {name, text: name.length === 1 ? name : name === 'space' ? ' ' : ''};
}

function state0(): AppState {
	const tagFrequency = JSON.stringify({'10_mira': {mira: 30, solo: 12, 'red eyes': 7}});
	const entries = ['a', 'b', 'c'].map((name, i) => fakeEntry(`${folder}/${name}.safetensors`, {mtime: 1000 + i, metadata: {ss_tag_frequency: tagFrequency, ss_epoch: String(i + 1), ss_output_name: 'run', ss_dataset_dirs: JSON.stringify({'10_mira': {n_repeats: 10, img_count: 30}})}}));
	return [
		{type: 'viewport', viewport: {listRows: 10, detailRows: 10, detailWidth: 80, bodyRows: 20, bodyWidth: 120}},
		{type: 'entries-loaded', entries, now: 0},
	].reduce<AppState>((s, a) => reducer(s, a as Action), initialState(folder, unicodeEnv));
}

/** Routes keys one after another, applying actions, collecting effects. */
function typeKeys(state: AppState, ...names: string[]): {state: AppState; effects: Outcome[]} {
	const effects: Outcome[] = [];
	let current = state;
	for (const name of names) {
		for (const outcome of routeKey(current, press(name)).outcomes) {
			if (isEffect(outcome)) {
				effects.push(outcome);
			} else {
				current = reducer(current, outcome);
			}
		}
	}

	return {state: current, effects};
}

test('Ink keys become router key names', () => {
	assert.deepEqual(keyPressFrom('', {...noKey, downArrow: true}), {name: 'down', text: ''});
	assert.deepEqual(keyPressFrom('', {...noKey, return: true}), {name: 'return', text: ''});
	assert.deepEqual(keyPressFrom('', {...noKey, tab: true, shift: true}), {name: 'shift+tab', text: ''});
	assert.deepEqual(keyPressFrom('', {...noKey, delete: true}), {name: 'backspace', text: ''});
	assert.deepEqual(keyPressFrom('', {...noKey, escape: true, meta: true}), {name: 'escape', text: ''});
	assert.deepEqual(keyPressFrom('c', {...noKey, ctrl: true}), {name: 'ctrl+c', text: ''});
	assert.deepEqual(keyPressFrom(' ', noKey), {name: 'space', text: ' '});
	assert.deepEqual(keyPressFrom('G', {...noKey, shift: true}), {name: 'G', text: 'G'});
	assert.deepEqual(keyPressFrom('', {...noKey, pageDown: true}), {name: 'pagedown', text: ''});
});

test('every view has a title and a keymap, and no key is bound twice in one view', () => {
	for (const view of Object.keys(viewTitles) as ViewId[]) {
		const seen = new Map<string, string>();
		for (const binding of keymaps[view].bindings) {
			for (const key of binding.keys) {
				assert.ok(!seen.has(key), `${view}: ${key} is bound to "${seen.get(key)}" and "${binding.label}"`);
				seen.set(key, binding.label);
			}
		}
	}

	const globalKeys = globalBindings.flatMap(b => b.keys);
	assert.equal(new Set(globalKeys).size, globalKeys.length);
});

test('keys go to the top view first, then to global bindings', () => {
	let {state, effects} = typeKeys(state0(), 'j', 'j');
	assert.equal(state.selected, 2);
	({state} = typeKeys(state, 'k', 'g'));
	assert.equal(state.selected, 0);
	({state} = typeKeys(state, 'G'));
	assert.equal(state.selected, 2);
	({state} = typeKeys(state, 'return'));
	assert.equal(topView(state), 'detail');
	({state} = typeKeys(state, 'j'));
	assert.equal(state.selected, 2, 'in the detail, j moves the tab cursor, not the file');
	({state} = typeKeys(state, 'tab', 'tab'));
	assert.equal(state.detail.tab, 'tags');
	({state} = typeKeys(state, '5'));
	assert.equal(state.detail.tab, 'blocks');
	({state} = typeKeys(state, 'escape'));
	assert.equal(topView(state), 'files');
	({state, effects} = typeKeys(state, '?'));
	assert.equal(topView(state), 'help');
	assert.deepEqual(effects, []);
	// In the help overlay q closes it rather than quitting.
	({state, effects} = typeKeys(state, 'q'));
	assert.equal(topView(state), 'files');
	assert.deepEqual(effects, []);
	({effects} = typeKeys(state, 'q'));
	assert.deepEqual(effects, [{kind: 'quit'}]);
});

test('the filter input takes every printable key, q included; Ctrl+C still quits', () => {
	let {state, effects} = typeKeys(state0(), '/', 'q', 's', '?', 'j');
	assert.equal(topView(state), 'input');
	assert.equal(state.input?.text, 'qs?j');
	assert.deepEqual(effects, []);
	({state} = typeKeys(state, 'backspace', 'backspace'));
	assert.equal(state.input?.text, 'qs');
	({state} = typeKeys(state, 'ctrl+u'));
	assert.equal(state.input?.text, '');
	({state} = typeKeys(state, 'b', 'return'));
	assert.equal(topView(state), 'files');
	assert.equal(state.filter.source, 'b');
	assert.deepEqual(state.order, [`${folder}/b.safetensors`]);
	({effects} = typeKeys(reducer(state, {type: 'input-open', target: 'filter'}), 'ctrl+c'));
	assert.deepEqual(effects, [{kind: 'quit'}]);
	// Esc on the list clears an active filter.
	({state} = typeKeys(state, 'escape'));
	assert.equal(state.order.length, 3);
});

test('a key that cannot act says why in the status line, and the next key clears it', () => {
	let {state} = typeKeys(state0(), 'c');
	assert.deepEqual(state.status, {text: 'compare: mark two files first (space)', level: 'warn'});
	({state} = typeKeys(state, 'j'));
	assert.equal(state.status, null);
	({state} = typeKeys(state, 'r'));
	assert.match(state.status?.text ?? '', /^resize: /);
	({state} = typeKeys(state, 'return', '/'));
	assert.equal(state.status?.text, 'search: only in the Metadata (2) and Tags (3) tabs');
	({state} = typeKeys(state, 'y'));
	assert.equal(state.status?.text, 'copy: only in the Tags tab (3)');
	({state} = typeKeys(state, 'o'));
	assert.equal(state.status?.text, 'sort modules: only in the Blocks tab (5)');
});

test('space marks, c compares two marked files', () => {
	const {state} = typeKeys(state0(), 'space', 'space', 'c');
	assert.equal(state.marks.length, 2);
	assert.equal(topView(state), 'compare');
	assert.equal(state.compare?.paths.length, 2);
	const back = typeKeys(state, 'escape').state;
	assert.equal(topView(back), 'files');
});

test('p compares the selected file with the previous epoch of its run', () => {
	const {state} = typeKeys(state0(), 'p');
	// Newest first: c (epoch 3) is selected; its previous epoch is b (2).
	assert.equal(selectedPath(state0()), `${folder}/c.safetensors`);
	assert.deepEqual(state.compare?.paths, [`${folder}/b.safetensors`, `${folder}/c.safetensors`]);
});

test('tags: space picks the tag under the cursor, y copies the picked tags', () => {
	let {state, effects} = typeKeys(state0(), 'return', '3');
	// Move the cursor to the first tag line.
	({state} = typeKeys(state, 'j'));
	({state, effects} = typeKeys(state, 'y'));
	assert.deepEqual(effects, [{kind: 'copy', text: 'mira', what: '1 tag'}]);
	({state} = typeKeys(state, 'space', 'space'));
	assert.deepEqual(state.detail.tagsSelected, ['mira', 'solo']);
	({effects} = typeKeys(state, 'y'));
	assert.deepEqual(effects, [{kind: 'copy', text: 'mira, solo', what: '2 tags'}]);
	({state} = typeKeys(state, 'x'));
	assert.deepEqual(state.detail.tagsSelected, []);
	({state} = typeKeys(state, 'm'));
	assert.equal(state.detail.tagsMode, 'per-dir');
	({state} = typeKeys(state, '/', 'r', 'e', 'd', 'return'));
	assert.equal(state.detail.tagsQuery, 'red');
});

test('the too-small screen only lets the user quit', () => {
	const state = state0();
	assert.deepEqual(routeKey(state, press('j'), {tooSmall: true}).outcomes, []);
	assert.deepEqual(routeKey(state, press('q'), {tooSmall: true}).outcomes, [{kind: 'quit'}]);
	assert.deepEqual(routeKey(state, press('ctrl+c'), {tooSmall: true}).outcomes, [{kind: 'quit'}]);
});

test('the help bar shows enabled on-screen keys of the focused view plus global ones', () => {
	let state = state0();
	let items = helpBarItems(state).map(i => i.label);
	assert.ok(items.includes('open'));
	assert.ok(items.includes('filter'));
	assert.ok(items.includes('help'));
	assert.ok(items.includes('quit'));
	assert.ok(!items.includes('compare'), 'compare is disabled until two files are marked');
	state = typeKeys(state, 'space', 'space').state;
	items = helpBarItems(state).map(i => i.label);
	assert.ok(items.includes('compare'));
	state = typeKeys(state, '/').state;
	items = helpBarItems(state).map(i => i.label);
	assert.deepEqual(items, ['apply', 'cancel', 'clear'], 'a modal input shows only its own keys');
});

test('the help overlay lists every key of the view under it, disabled ones with their reason', () => {
	const state = typeKeys(state0(), '?').state;
	const [files, everywhere] = helpSections(state, 'files');
	assert.equal(files?.title, 'File list');
	const compare = files?.rows.find(r => r.key === 'c');
	assert.equal(compare?.disabled, 'compare: mark two files first (space)');
	assert.ok(files?.rows.some(r => r.key === '1-5'));
	assert.ok(!files?.rows.some(r => r.key === '3'), 'tab keys 2-5 are folded into the 1-5 row');
	assert.deepEqual(everywhere?.rows.map(r => r.key), ['?', 'L', 'q', 'C-c']);
});

test('a chunk of several keys (fast typing, key repeat, tmux) is split into keys outside text input', () => {
	assert.deepEqual(keyPressesFrom('\t\t', noKey, false), [{name: 'tab', text: ''}, {name: 'tab', text: ''}]);
	assert.deepEqual(keyPressesFrom('jj ', noKey, false).map(p => p.name), ['j', 'j', 'space']);
	assert.deepEqual(keyPressesFrom('q\r\u007F\u0015', noKey, false).map(p => p.name), ['q', 'return', 'backspace', 'ctrl+u']);
	// A paste into the filter stays one piece of text.
	assert.deepEqual(keyPressesFrom('rank>=32', noKey, true), [{name: 'rank>=32', text: 'rank>=32'}]);
	// But Enter in a typed-ahead chunk still applies the filter.
	assert.deepEqual(keyPressesFrom('ab\r', noKey, true).map(p => p.name), ['a', 'b', 'return']);
	assert.deepEqual(keyPressesFrom('j', noKey, false), [{name: 'j', text: 'j'}]);
});
