/** @jsxRuntime automatic */
// The dashboard rendered into a fake terminal of explicit size, on generated fixtures: every tab shows
// real values (checked against references computed here), and keys change the frame.
import assert from 'node:assert/strict';
import {utimes} from 'node:fs/promises';
import {after, before, test} from 'node:test';
import {Root} from '../source/app.js';
import {readHeader} from '../source/lora/safetensors.js';
import type {TerminalEnv} from '../source/state/types.js';
import {assertClose, brokenFile, inProcessEngine, referenceNorms, sample, tempFolder} from './helpers/fixtures.js';
import {keys, plain, renderInTerminal, type Rendered} from './helpers/render.js';

const env: TerminalEnv = {unicode: true, color: false};
const now = Date.now();
let folder: {dir: string; remove: () => Promise<void>};
let aria: string;
let mira: string[];
let ariaMeta: Record<string, string>;
let ariaRef: Awaited<ReturnType<typeof referenceNorms>>;
let miraRefs: Array<Awaited<ReturnType<typeof referenceNorms>>>;
const open: Rendered[] = [];

/** IN01 of SD1.x in kohya names: the first down block's first attention and resnet. */
const isIn01 = (name: string): boolean => /^lora_unet_down_blocks_0_(attentions|resnets)_0_/.test(name);

function blockNorm(ref: Awaited<ReturnType<typeof referenceNorms>>, member: (name: string) => boolean): number {
	let sum = 0;
	for (const m of ref.modules.values()) {
		if (member(m.name)) {
			sum += m.squaredNorm;
		}
	}

	return Math.sqrt(sum);
}

before(async () => {
	folder = await tempFolder();
	aria = await sample(folder.dir, 'aria.safetensors', 'sd15-lora', {rank: 8, alpha: 4});
	mira = [];
	for (const epoch of [1, 2, 3]) {
		mira.push(await sample(folder.dir, `mira-00000${epoch}.safetensors`, 'sd15-epoch', {epoch, epochs: 3}));
	}

	const broken = await brokenFile(folder.dir);
	// Deterministic order, newest first: aria, mira 3, 2, 1, broken.
	const seconds = Math.floor(now / 1000);
	await utimes(aria, seconds - 50, seconds - 50);
	for (const [index, file] of mira.entries()) {
		await utimes(file, seconds - 300 + index * 100, seconds - 300 + index * 100);
	}

	await utimes(broken, seconds - 400, seconds - 400);
	ariaMeta = (await readHeader(aria)).metadata;
	ariaRef = await referenceNorms(aria, isIn01);
	miraRefs = await Promise.all(mira.map(async file => referenceNorms(file, isIn01)));
});

after(async () => {
	for (const r of open) {
		r.unmount();
	}

	await folder.remove();
});

function start(columns = 120, rows = 40, extra: {copies?: string[]} = {}): Rendered & {engine: ReturnType<typeof inProcessEngine>} {
	const engine = inProcessEngine();
	const rendered = renderInTerminal(
		<Root folder={folder.dir} env={env} engine={() => engine} watch={false} onCopy={sequence => extra.copies?.push(sequence)} />,
		{columns, rows},
	);
	open.push(rendered);
	return {...rendered, engine};
}

/** The text of the frame line that contains `needle`. */
function lineWith(frame: string, needle: string | RegExp): string {
	const found = plain(frame).split('\n').find(l => (typeof needle === 'string' ? l.includes(needle) : needle.test(l)));
	assert.ok(found, `no line with ${String(needle)} in:\n${plain(frame)}`);
	return found;
}

/** Like lineWith, on the content of the right-hand (or only) pane: borders and the list pane cut off. */
function paneLine(frame: string, needle: string | RegExp): string {
	const lines = plain(frame)
		.split('\n')
		.map(l => {
			const split = l.indexOf('││');
			return (split >= 0 ? l.slice(split + 2) : l.replace(/^│/, '')).replace(/│$/, '');
		});
	const found = lines.find(l => (typeof needle === 'string' ? l.includes(needle) : needle.test(l)));
	assert.ok(found, `no pane line with ${String(needle)} in:\n${plain(frame)}`);
	return found;
}

const loadedAll = (frame: string): boolean => plain(frame).includes('5 files') && !plain(frame).includes('loading') && plain(frame).includes('8/4');

test('120x40: the list shows every file with size, age and rank/alpha; the failed one with its reason', async () => {
	const app = start();
	const frame = plain(await app.waitFor(loadedAll));
	const lines = frame.split('\n');
	assert.equal(lines.length, 39, 'the root is rows-1 tall');
	assert.ok(lines.every(l => l.length <= 120), 'no line wider than the terminal');
	const ariaRow = lineWith(frame, 'aria.safetensors');
	const expectedSize = `${((await readHeader(aria)).sizeBytes / 1024 / 1024).toFixed(1)} MiB`;
	assert.ok(ariaRow.includes(expectedSize), `${ariaRow} has ${expectedSize}`);
	assert.match(ariaRow, /5\ds ago/);
	assert.match(ariaRow, /8\/4/);
	const miraRow = lineWith(frame, 'mira-000003');
	const miraMeta = (await readHeader(mira[2]!)).metadata;
	assert.ok(miraRow.includes(`${miraMeta['ss_network_dim']}/${Number(miraMeta['ss_network_alpha'])}`), miraRow);
	const brokenRow = lineWith(frame, 'broken');
	assert.match(brokenRow, /ERR/);
	assert.match(brokenRow, /✗ /);
	// Newest first.
	const order = ['aria', 'mira-000003', 'mira-000002', 'mira-000001', 'broken'].map(name => frame.indexOf(name));
	assert.deepEqual([...order].sort((a, b) => a - b), order);
	assert.match(lineWith(frame, 'lorascope'), /5 files, 1 failed/);
});

test('Enter opens the detail: Overview shows identity, training facts and definitions on demand', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	// The alpha tensors of the selected file are read after its header: wait for the exact scale.
	let frame = await app.pressAndWait('(scale alpha/rank = 0.5)', keys.enter);
	const modules = ariaRef.modules.size;
	assert.match(lineWith(frame, 'Rank / alpha'), /8 \/ 4 {2}\(scale alpha\/rank = 0\.5\)/);
	assert.match(lineWith(frame, 'Modules'), new RegExp(`${modules} \\(`));
	assert.match(lineWith(frame, /^.*Architecture.*attn2/), /SD ?1/);
	assert.match(lineWith(frame, 'Title'), /aria_lsc/);
	// The cursor's field definition appears in the hint line.
	frame = await app.pressAndWait('the name the author gave', 'j');
	frame = await app.pressAndWait(f => plain(f).includes('ss_output_name: the name'), 'j');
	assert.ok(plain(frame).includes('Output name'));
	// i shows every definition inline.
	frame = await app.pressAndWait('Size on disk and last', 'i');
});

test('Metadata tab: every key, searchable, long JSON pretty-printed', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	const total = Object.keys(ariaMeta).length;
	let frame = await app.pressAndWait(`${total} keys`, keys.enter, '2');
	assert.match(lineWith(frame, 'modelspec.title'), /modelspec\.title\s+aria_lsc\s/);
	frame = await app.pressAndWait('keys match "learning_rate"', '/', ...'learning_rate', keys.enter);
	assert.match(lineWith(frame, 'ss_learning_rate'), new RegExp(`ss_learning_rate\\s+${ariaMeta['ss_learning_rate']!.replace('.', '\\.')}`));
	frame = await app.pressAndWait(`${total} keys`, '/', keys.ctrlU, keys.enter);
	const matching = Object.keys(ariaMeta).filter(k => k.includes('tag_frequency') || ariaMeta[k]!.includes('tag_frequency')).length;
	frame = await app.pressAndWait(`${matching} of ${total} keys match "tag_frequency"`, '/', ...'tag_frequency', keys.enter);
	// Pretty-printed: the first dir of the tag histogram on its own line, then a tag with its count.
	const tagFrequency = JSON.parse(ariaMeta['ss_tag_frequency']!) as Record<string, Record<string, number>>;
	const [firstDir, firstTags] = Object.entries(tagFrequency)[0]!;
	const [firstTag, firstCount] = Object.entries(firstTags)[0]!;
	assert.ok(plain(frame).includes(`"${firstDir}": {`), plain(frame));
	assert.ok(plain(frame).includes(`"${firstTag}": ${firstCount},`));
	// Scrolling moves through the long value.
	const before = plain(frame);
	frame = await app.pressAndWait(f => plain(f) !== before, keys.pageDown, keys.pageDown);
});

test('Tags tab: merged histogram with counts, trigger candidates, per-dir mode, OSC 52 copy', async () => {
	const copies: string[] = [];
	const app = start(120, 40, {copies});
	await app.waitFor(loadedAll);
	const tagFrequency = JSON.parse(ariaMeta['ss_tag_frequency']!) as Record<string, Record<string, number>>;
	const merged = new Map<string, number>();
	for (const tags of Object.values(tagFrequency)) {
		for (const [tag, count] of Object.entries(tags)) {
			merged.set(tag.trim(), (merged.get(tag.trim()) ?? 0) + count);
		}
	}

	const sorted = [...merged.entries()].sort((a, b) => b[1] - a[1]);
	const [topTag, topCount] = sorted[0]!;
	let frame = await app.pressAndWait(`${merged.size} tags in ${Object.keys(tagFrequency).length} dirs`, keys.enter, '3');
	const topLine = lineWith(frame, new RegExp(`★ ${topTag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s`));
	assert.match(topLine, new RegExp(`█+\\s+${topCount}\\s*│`));
	// The second tag's bar is shorter or equal, in proportion.
	const [secondTag, secondCount] = sorted[1]!;
	const secondLine = lineWith(frame, new RegExp(`\\s${secondTag}\\s`));
	assert.ok(secondLine.includes(String(secondCount)));
	// Copy the tag under the cursor with y: an OSC 52 sequence with its base64.
	await app.pressAndWait('copied 1 tag', 'j', 'y');
	assert.equal(copies.length, 1);
	assert.equal(copies[0], `\u001B]52;c;${Buffer.from(topTag).toString('base64')}\u0007`);
	frame = await app.pressAndWait('dirs, per dir', 'm');
	assert.ok(plain(frame).includes(Object.keys(tagFrequency)[0]!));
});

test('Dataset tab: dirs with repeats and images, and the buckets', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	const frame = await app.pressAndWait('Dataset dirs', keys.enter, '4');
	const dirs = JSON.parse(ariaMeta['ss_dataset_dirs']!) as Record<string, {n_repeats: number; img_count: number}>;
	for (const [dir, {n_repeats: repeats, img_count: images}] of Object.entries(dirs)) {
		const row = lineWith(frame, dir);
		assert.match(row, new RegExp(`\\s${repeats}\\s+${images}\\s+${repeats * images}\\s+train`), row);
	}

	const buckets = JSON.parse(ariaMeta['ss_bucket_info']!) as {buckets: Record<string, {resolution: [number, number]; count: number}>};
	const first = Object.values(buckets.buckets)[0]!;
	assert.match(lineWith(frame, `${first.resolution[0]}x${first.resolution[1]}`), new RegExp(`\\s${first.count}\\s*│`));
});

test('Blocks tab: totals and block norms from the engine match float64 references; modules sort by norm', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	let frame = await app.pressAndWait(f => plain(f).includes('UNet ‖ΔW‖'), keys.enter, '5');
	const totals = /UNet ‖ΔW‖ (\S+)\s+TE ‖ΔW‖ (\S+)/.exec(lineWith(frame, 'UNet ‖ΔW‖'));
	assertClose(totals?.[1], ariaRef.unet, 'UNet total');
	assertClose(totals?.[2], ariaRef.te, 'TE total');
	assert.ok(ariaRef.denseChecked >= 6, 'IN01 references were also checked densely');
	const in01 = /IN01\s+[█▏▎▍▌▋▊▉]+\s+(\S+)/.exec(paneLine(frame, /^IN01 /));
	assertClose(in01?.[1], blockNorm(ariaRef, isIn01), 'IN01 block norm');
	// The TE block is listed separately.
	assertClose(/TE\s+[█▏▎▍▌▋▊▉]+\s+(\S+)/.exec(paneLine(frame, /^TE\s+█/))?.[1], ariaRef.te, 'TE block');
	// Sort the module table by norm: the largest module first.
	const largest = [...ariaRef.modules.values()].sort((a, b) => b.squaredNorm - a.squaredNorm)[0]!;
	frame = await app.pressAndWait('sorted by ‖ΔW‖', 'o');
	frame = await app.pressAndWait(f => plain(f).includes(largest.name.slice(-20)), 'G');
	assert.equal(app.engine.started.length, 1, 'one stats job for one file');
});

test('compare two epochs: metadata diff counts and block norms of both with their difference', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	// Newest first: aria, mira 3, mira 2. Mark mira 3 and mira 2.
	let frame = await app.pressAndWait('2 marked', 'j', keys.space, keys.space);
	frame = await app.pressAndWait(f => plain(f).includes('IN01') && plain(f).includes('changed'), 'c');
	const [a, b] = await Promise.all([readHeader(mira[1]!), readHeader(mira[2]!)]);
	let changed = 0;
	for (const key of Object.keys(a.metadata)) {
		const x = a.metadata[key]!;
		const y = b.metadata[key];
		if (y === undefined || x === y) {
			continue;
		}

		let same = false;
		try {
			same = JSON.stringify(JSON.parse(x)) === JSON.stringify(JSON.parse(y));
		} catch {
			// Not JSON: the strings differ.
		}

		changed += same ? 0 : 1;
	}

	assert.match(paneLine(frame, /^Metadata\s+\d+ changed/), new RegExp(`Metadata\\s+${changed} changed`));
	assert.match(paneLine(frame, /^A mira-000002/), /epoch 2/);
	const row = /IN01\s+(\S+)\s+(\S+)\s+(\S+)/.exec(paneLine(frame, /^IN01\s+\d/));
	const normA = blockNorm(miraRefs[1]!, isIn01);
	const normB = blockNorm(miraRefs[2]!, isIn01);
	assertClose(row?.[1], normA, 'IN01 of A');
	assertClose(row?.[2], normB, 'IN01 of B');
	assertClose(row?.[3], normB - normA, 'IN01 B - A', 2e-3);
	frame = await app.pressAndWait(f => plain(f).includes('5 files'), keys.escape);
});

test('compare three epochs of one run: charts and the per-epoch table', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	await app.pressAndWait('3 marked', 'j', keys.space, keys.space, keys.space);
	const frame = await app.pressAndWait(f => plain(f).includes('Block IN01') && plain(f).includes('by epoch'), 'c');
	assert.ok(plain(frame).includes('Epoch series: 3 files'));
	assert.match(plain(frame), /[╭╮╰╯─│┤┼]/, 'an asciichart line chart');
	// Scroll to the table and check the UNet totals per epoch.
	const table = await app.pressAndWait(f => /^│UNet\s+\d/m.test(plain(f)), keys.pageDown, keys.pageDown);
	const values = paneLine(table, /^UNet\s+\d/).trim().split(/\s+/).slice(1);
	for (const [index, ref] of miraRefs.entries()) {
		assertClose(values[index], ref.unet, `UNet total, epoch ${index + 1}`);
	}
});

test('80x24: stacked layout, still every column that fits, and the help overlay', async () => {
	const app = start(80, 24);
	let frame = plain(await app.waitFor(loadedAll));
	const lines = frame.split('\n');
	assert.equal(lines.length, 23);
	assert.ok(lines.every(l => l.length <= 80));
	assert.match(lineWith(frame, 'aria.safetensors'), /sd1\s+LoRA\s+8\/4\s+10/);
	frame = plain(await app.pressAndWait('Keys: File list', '?'));
	frame = plain(await app.pressAndWait(f => / c {8}/.test(plain(f)), keys.pageDown));
	assert.match(lineWith(frame, / c {8}/), /compare the marked files/);
	assert.ok(frame.includes('compare: mark two files first (space)'), 'the reason a disabled key cannot act');
	frame = plain(await app.pressAndWait(f => !plain(f).includes('Keys: File list'), keys.escape));
	// A key that cannot act says why.
	frame = plain(await app.pressAndWait('compare: mark two files first', 'c'));
});

test('too small: a clear message, and resizing back restores the view', async () => {
	const app = start(62, 20);
	let frame = plain(await app.waitFor('needs ≥ 80×24, have 62×20'));
	assert.ok(frame.split('\n').length <= 19);
	app.stdout.resize(120, 40);
	frame = plain(await app.waitFor(loadedAll));
	assert.ok(frame.includes('aria.safetensors'));
	app.stdout.resize(100, 23);
	await app.waitFor('have 100×23');
});

test('q quits through the single exit', async () => {
	const app = start();
	await app.waitFor(loadedAll);
	app.press('q');
	await app.instance.waitUntilExit();
});
