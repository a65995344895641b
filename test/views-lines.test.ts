// The pure builders behind the views: list columns, tab lines and the stats the screen asks for.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import {neededStats} from '../source/hooks/use-stats.js';
import {parseTraining} from '../source/lora/metadata.js';
import type {LoraStats} from '../source/lora/types.js';
import {bar, progressBar} from '../source/state/glyphs.js';
import {lineText} from '../source/state/lines.js';
import {listColumns, prefixWidth} from '../source/state/list-columns.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import {statsKeyOf} from '../source/state/selectors.js';
import {blocksLines, splitBlocks} from '../source/state/tab-blocks.js';
import {metadataLines, prettyJsonLines} from '../source/state/tab-metadata.js';
import {tagsLines} from '../source/state/tab-tags.js';
import {displayWidth, fit, toAscii, truncate, wrap} from '../source/state/text.js';
import type {AppState} from '../source/state/types.js';
import {asciiEnv, fakeEntry, unicodeEnv} from './helpers/entries.js';

test('list columns: all of them when wide, dropped by priority when narrow, name always', () => {
	const ids = (width: number): string[] => listColumns(width).map(c => c.id);
	assert.deepEqual(ids(200), ['name', 'folder', 'size', 'modified', 'arch', 'type', 'rank', 'epoch', 'output']);
	assert.deepEqual(ids(78), ['name', 'size', 'modified', 'arch', 'type', 'rank', 'epoch']);
	assert.deepEqual(ids(54), ['name', 'size', 'modified', 'rank']);
	assert.deepEqual(ids(30), ['name']);
	for (const width of [30, 54, 78, 118, 200]) {
		const columns = listColumns(width);
		const used = prefixWidth + columns.reduce((sum, c) => sum + c.width, 0) + columns.length - 1;
		assert.ok(used <= width, `${width}: ${used}`);
		assert.ok(columns[0]!.width >= 18 || width < 50, `${width}: name ${columns[0]!.width}`);
	}
});

test('text helpers: width-exact fit, word wrap, ASCII fallback', () => {
	assert.equal(fit('abc', 5, unicodeEnv), 'abc  ');
	assert.equal(fit('abc', 5, unicodeEnv, 'right'), '  abc');
	assert.equal(fit('abcdefgh', 5, unicodeEnv), 'abcd…');
	assert.equal(fit('abcdefgh', 5, asciiEnv), 'ab...');
	assert.equal(displayWidth(fit('日本語のタグ', 7, unicodeEnv)), 7);
	assert.equal(truncate('日本語', 4, unicodeEnv), '日…');
	assert.deepEqual(wrap('one two three four', 9), ['one two', 'three', 'four']);
	assert.deepEqual(wrap('averyveryverylongword x', 8), ['averyver', 'yverylon', 'gword x']);
	assert.equal(toAscii('‖ΔW‖ · ×2 → ok'), '|dW| - x2 -> ok');
	assert.equal(toAscii('日'), '?');
});

test('bars: proportional, eighth cells in Unicode, # in ASCII', () => {
	assert.equal(bar(1, 8, unicodeEnv), '████████');
	assert.equal(bar(0.5, 8, unicodeEnv), '████');
	assert.equal(bar(0.5625, 8, unicodeEnv), '████▌');
	assert.equal(bar(0.5, 8, asciiEnv), '####');
	assert.equal(bar(Number.NaN, 8, unicodeEnv), '');
	assert.equal(progressBar(1, 4, 10, asciiEnv), '[##......]');
	assert.equal(displayWidth(progressBar(3, 7, 20, unicodeEnv)), 20);
});

test('metadata lines: sorted keys, search counts, JSON pretty-printed with short arrays inline', () => {
	const metadata = {b_key: 'short', a_key: 'x'.repeat(30), ss_bucket_info: JSON.stringify({buckets: {0: {resolution: [512, 512], count: 3}}})};
	const lines = metadataLines(metadata, '', 60, unicodeEnv).map(lineText);
	assert.equal(lines[0], '3 keys  (/ to search)');
	assert.ok(lines[1]!.startsWith('a_key'));
	assert.ok(lines.some(l => l.includes('"resolution": [512, 512],')));
	assert.ok(lines.filter(l => l.startsWith('a_key') || l.startsWith(' ')).length >= 2, 'the long value wraps');
	const searched = metadataLines(metadata, 'short', 40, unicodeEnv).map(lineText);
	assert.equal(searched[0], '1 of 3 keys match "short"  (/ to change, empty to clear)');
	assert.deepEqual(prettyJsonLines('{"a": [1, 2], "b": {"c": []}}'), ['{', '  "a": [1, 2],', '  "b": {', '    "c": []', '  }', '}']);
	assert.equal(prettyJsonLines('not json'), null);
	assert.deepEqual(metadataLines(undefined, '', 40, unicodeEnv).map(lineText), ['No __metadata__ in this file (nothing about its training was saved).']);
});

test('tags lines: merged counts, trigger candidates starred, picks marked, search', () => {
	const training = parseTraining({
		ss_tag_frequency: JSON.stringify({'5_a': {mira: 10, solo: 4}, '2_b': {mira: 6, hat: 1}}),
		ss_dataset_dirs: JSON.stringify({'5_a': {n_repeats: 5, img_count: 10}, '2_b': {n_repeats: 2, img_count: 6}}),
	});
	const lines = tagsLines(training, {mode: 'merged', query: '', picked: ['solo'], width: 60, env: unicodeEnv});
	const text = lines.map(lineText);
	const row = (tag: string): string => text.find(l => new RegExp(`^.{4}${tag} `).test(l))!;
	assert.match(row('mira'), /^ {2}★ mira\s+█+\s+16$/);
	assert.match(row('solo'), /^● {3}solo\s+[█▏▎▍▌▋▊▉]+\s+4$/);
	assert.match(row('hat'), /\s1$/);
	assert.match(text[1]!, /trigger-word candidates .*: mira$/);
	assert.ok(text[0]!.startsWith('3 tags in 2 dirs, merged'));
	const keys = lines.filter(l => l.key !== undefined).map(l => l.key);
	assert.deepEqual(keys, ['tag:mira', 'tag:solo', 'tag:hat']);
	const searched = tagsLines(training, {mode: 'merged', query: 'ha', picked: [], width: 60, env: unicodeEnv}).filter(l => l.key !== undefined);
	assert.deepEqual(searched.map(l => l.key), ['tag:hat']);
	const perDir = tagsLines(training, {mode: 'per-dir', query: '', picked: [], width: 60, env: unicodeEnv}).map(lineText);
	assert.ok(perDir.some(l => l.startsWith('5_a')));
	assert.ok(perDir.some(l => l.startsWith('2_b')));
});

const stats: LoraStats = {
	buckets: {unet: {magnitude: 1.5, strength: 0.01, tensors: 4}, unetConv: null, te: null, te2: null},
	modules: [
		{name: 'lora_unet_a', block: 'IN01', blockOrder: 1, component: 'unet', rank: 4, alpha: 2, norm: 0.5, nonFinite: 0},
		{name: 'lora_unet_b', block: 'OUT11', blockOrder: 24, component: 'unet', rank: 4, alpha: 2, norm: 2, nonFinite: 0},
		{name: 'lora_te_c', block: 'TE', blockOrder: 100, component: 'te', rank: 4, alpha: 2, norm: 1, nonFinite: 0},
	],
	blocks: [
		{name: 'OUT11', blockOrder: 24, modules: 1, norm: 2, mean: 2},
		{name: 'TE', blockOrder: 100, modules: 1, norm: 1, mean: 1},
		{name: 'IN01', blockOrder: 1, modules: 1, norm: 0.5, mean: 0.5},
	],
	unetNorm: Math.sqrt(4.25),
	teNorm: 1,
	nonFiniteValues: 0,
	zeroModules: [],
	bytesRead: 0,
};

test('blocks lines: progress, error, then bars in block order with TE apart and the module table', () => {
	assert.match(lineText(blocksLines({state: 'running', jobId: 'j', path: 'p', done: 3, total: 12}, 'block', 80, unicodeEnv)[0]!), /Computing ‖ΔW‖ per module \[█+░+\] 3\/12 modules/);
	assert.match(lineText(blocksLines({state: 'error', jobId: 'j', path: 'p', done: 0, total: 0, error: 'engine stopped'}, 'block', 80, unicodeEnv)[0]!), /Statistics failed: engine stopped/);
	const {unet, te} = splitBlocks(stats.blocks);
	assert.deepEqual(unet.map(b => b.name), ['IN01', 'OUT11']);
	assert.deepEqual(te.map(b => b.name), ['TE']);
	const text = blocksLines({state: 'done', jobId: 'j', path: 'p', done: 3, total: 3, result: stats}, 'norm', 80, unicodeEnv).map(lineText);
	assert.match(text[0]!, /^UNet ‖ΔW‖ 2\.062 {3}TE ‖ΔW‖ 1 {3}TE\/UNet 0\.485$/);
	const in01 = text.findIndex(l => l.startsWith('IN01'));
	const out11 = text.findIndex(l => l.startsWith('OUT11'));
	assert.ok(in01 < out11);
	// OUT11 is the largest: a full bar; IN01 a quarter of it.
	const barOf = (l: string): number => [...l].filter(ch => ch === '█').length;
	assert.equal(barOf(text[in01]!) * 4, barOf(text[out11]!));
	const rows = text.filter(l => l.includes('lora_'));
	assert.deepEqual(rows.map(l => /lora_\w+/.exec(l)?.[0]), ['lora_unet_b', 'lora_te_c', 'lora_unet_a'], 'sorted by norm');
});

test('the stats the screen needs: the selected file on the Blocks tab, the compared files', () => {
	const entries = ['a', 'b', 'c'].map((name, i) => fakeEntry(`/f/${name}.safetensors`, {mtime: 10 + i}));
	let state: AppState = [{type: 'entries-loaded', entries, now: 0} as Action].reduce(reducer, initialState('/f', unicodeEnv));
	assert.deepEqual(neededStats(state), []);
	state = reducer(state, {type: 'tab-set', tab: 'blocks'});
	const row = state.rows.get('/f/c.safetensors')!;
	assert.deepEqual(neededStats(state), [{key: statsKeyOf(row), path: row.path, label: 'stats c.safetensors'}]);
	state = reducer(state, {type: 'stats-started', key: statsKeyOf(row), jobId: 'j1', path: row.path, label: 'x'});
	assert.deepEqual(neededStats(state).map(n => n.path), [row.path], 'still wanted: the hook skips slots that exist');
	state = reducer(state, {type: 'compare-open', paths: ['/f/a.safetensors', '/f/b.safetensors']});
	assert.deepEqual(neededStats(state).map(n => n.path), ['/f/a.safetensors', '/f/b.safetensors']);
});
