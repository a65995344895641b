// A folder of 1,000 LoRAs: the list is on screen within a second (names, sizes and times come from
// the folder listing; headers load afterwards, a few at a time), and moving the selection while the
// headers load answers at once: keys never wait on disk.
import './helpers/production-react.js';
import assert from 'node:assert/strict';
import {link} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {createElement} from 'react';
import {Root} from '../source/app.js';
import {sample, tempFolder} from './helpers/fixtures.js';
import {plain, renderInTerminal, type Rendered} from './helpers/render.js';

const count = 1000;
let folder: {dir: string; remove: () => Promise<void>};
let app: Rendered | undefined;

before(async () => {
	folder = await tempFolder('lorascope-1000-');
	// One realistic SD1.5 kohya file (792 tensors, full training metadata), hard-linked 1,000 times
	// under different names: real headers to read, without a gigabyte of disk.
	const original = await sample(folder.dir, 'source/original.safetensors', 'sd15-lora', {rank: 1, alpha: 1});
	for (let i = 0; i < count; i++) {
		await link(original, path.join(folder.dir, `lora-${String(i).padStart(4, '0')}.safetensors`));
	}
});

after(async () => {
	app?.unmount();
	await folder.remove();
});

test(`${count} files: the list within a second, keys answered while headers load`, async t => {
	const started = performance.now();
	// No JSX in this file: tsx compiles test JSX for React's development runtime, and React runs in production here.
	app = renderInTerminal(createElement(Root, {folder: folder.dir, env: {unicode: true, color: false}, watch: false}), {columns: 120, rows: 40});
	const listed = await app.waitFor(f => plain(f).includes(`${count + 1} files`) && plain(f).includes('lora-0000'));
	const listMs = performance.now() - started;
	assert.ok(listMs < 1000, `the list took ${listMs.toFixed(0)} ms`);
	assert.ok(plain(listed).includes(' 1/1001'));

	// While headers are still loading, j moves the selection right away.
	const loadingNow = plain(app.lastFrame()).includes('loading');
	const keyStart = performance.now();
	const moved = await app.pressAndWait(f => plain(f).includes(' 4/1001'), 'j', 'j', 'j');
	const keyMs = performance.now() - keyStart;
	assert.ok(keyMs < 250, `moving the selection took ${keyMs.toFixed(0)} ms`);
	assert.ok(plain(moved).length > 0);

	await app.waitFor(f => !plain(f).includes('loading') && plain(f).includes('headers read in'), 60_000);
	const allMs = performance.now() - started;
	const shown = /headers read in (\S+) s/.exec(plain(app.lastFrame()))?.[1];
	t.diagnostic(`list on screen after ${listMs.toFixed(0)} ms; 3 key presses answered in ${keyMs.toFixed(0)} ms${loadingNow ? ' while headers were loading' : ''}; all ${count + 1} headers read after ${(allMs / 1000).toFixed(2)} s (app says ${shown} s)`);
});
