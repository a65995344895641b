// A folder of 1,000 LoRAs: the list is on screen before the headers are read (names, sizes and times
// come from the folder listing; headers load afterwards, a few at a time), and moving the selection
// while the headers load answers at once: keys never wait on disk. Behaviour only: the seconds are
// printed as diagnostics, and `npm run bench -- core` measures them (timed asserts flake on a loaded CI).
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

test(`${count} files: the list before the headers, keys answered while headers load`, async t => {
	const started = performance.now();
	// No JSX in this file: tsx compiles test JSX for React's development runtime, and React runs in production here.
	app = renderInTerminal(createElement(Root, {folder: folder.dir, env: {unicode: true, color: false}, watch: false}), {columns: 120, rows: 40});
	const listed = await app.waitFor(f => plain(f).includes(`${count + 1} files`) && plain(f).includes('lora-0000'));
	const listMs = performance.now() - started;
	assert.ok(plain(listed).includes(' 1/1001'));
	// Progressive: every row is listed while most headers are still unread (1,001 take seconds).
	assert.match(plain(listed), /loading/, 'the list waited for the headers');

	// While headers are still loading, j moves the selection: the move lands before loading ends.
	const keyStart = performance.now();
	const moved = await app.pressAndWait(f => plain(f).includes(' 4/1001'), 'j', 'j', 'j');
	const keyMs = performance.now() - keyStart;
	assert.match(plain(moved), /loading/, 'the key presses waited for the headers');

	await app.waitFor(f => !plain(f).includes('loading') && plain(f).includes('headers read in'), 60_000);
	const allMs = performance.now() - started;
	const shown = /headers read in (\S+) s/.exec(plain(app.lastFrame()))?.[1];
	t.diagnostic(`list on screen after ${listMs.toFixed(0)} ms; 3 key presses answered in ${keyMs.toFixed(0)} ms while headers were loading; all ${count + 1} headers read after ${(allMs / 1000).toFixed(2)} s (app says ${shown} s)`);
});
