/** @jsxRuntime automatic */
// A file whose metadata (keys, values, tag names, dataset dirs, title) is full of escape sequences:
// every view renders them inert. Colours are forced on, so the frames carry Ink's own SGR sequences;
// the only escapes allowed in a frame are those (ESC [ digits m), never one from the file.
import './helpers/force-color.js';
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {Root} from '../source/app.js';
import {brokenFile, hostileFile, inProcessEngine, sample, tempFolder} from './helpers/fixtures.js';
import {keys, plain, renderInTerminal, type Rendered} from './helpers/render.js';

let folder: {dir: string; remove: () => Promise<void>};
let app: Rendered;
const copies: string[] = [];

function assertInert(frame: string, where: string): void {
	const withoutStyles = frame.replaceAll(/\u001B\[[0-9;]*m/g, '');
	assert.ok(!withoutStyles.includes('\u001B'), `${where}: an ESC that is not a colour/style sequence:\n${JSON.stringify(withoutStyles)}`);
	for (const [name, ch] of [['BEL', '\u0007'], ['C1 CSI', '\u009B'], ['RLO', '\u202E'], ['CR', '\r']] as const) {
		assert.ok(!frame.includes(ch), `${where}: ${name} reached the terminal`);
	}

}

before(async () => {
	folder = await tempFolder('lorascope-hostile-');
	await hostileFile(folder.dir);
	await sample(folder.dir, 'plain.safetensors', 'sd15-epoch', {epoch: 1});
	await brokenFile(folder.dir, 'evil\u001B]0;name\u0007.safetensors');
	const engine = inProcessEngine();
	app = renderInTerminal(<Root folder={folder.dir} env={{unicode: true, color: true}} engine={() => engine} watch={false} onCopy={sequence => copies.push(sequence)} />, {columns: 120, rows: 40});
});

after(async () => {
	app.unmount();
	await folder.remove();
});

test('the frames really carry styling, so the check below is not vacuous', async () => {
	const frame = await app.waitFor(f => plain(f).includes('3 files') && !plain(f).includes('loading'));
	assert.match(frame, /\u001B\[[0-9;]*m/);
	assertInert(frame, 'list');
	// The OSC sequence in the broken file's name is dropped; the name around it stays.
	assert.ok(plain(frame).includes('evil.safetensors'), plain(frame));
});

test('every tab of the hostile file renders its escape sequences inert', async () => {
	// Newest first: the broken file was written last; select the hostile one by filtering.
	await app.pressAndWait(f => plain(f).includes('1 of 3 files'), '/', ...'hostile', keys.enter);
	let frame = await app.pressAndWait('Output name', keys.enter);
	assertInert(frame, 'overview');
	assert.ok(plain(frame).includes('Evil'), 'the visible text around the sequences stays');
	for (const [tab, marker] of [['2', 'keys'], ['3', 'tags in'], ['4', 'Dataset dirs'], ['5', 'UNet']] as const) {
		frame = await app.pressAndWait(f => plain(f).includes(marker), tab);
		assertInert(frame, `tab ${tab}`);
	}

	// The metadata tab, searched for the hostile key, with the clipboard sequence in its value.
	frame = await app.pressAndWait(f => plain(f).includes('evil_key'), '2', '/', ...'evil', keys.enter);
	assertInert(frame, 'metadata search');
	// Help and the status line with a hostile filter text.
	frame = await app.pressAndWait('Keys: Detail', '?');
	assertInert(frame, 'help');
	await app.pressAndWait(f => !plain(f).includes('Keys: Detail'), keys.escape);
});

test('copying a hostile tag puts only inert text into the OSC 52 payload', async () => {
	await app.pressAndWait('tags in', '3');
	await app.pressAndWait('copied', 'j', 'y');
	assert.equal(copies.length, 1);
	const match = /^\u001B\]52;c;([A-Za-z0-9+/=]*)\u0007$/.exec(copies[0]!);
	assert.ok(match, JSON.stringify(copies[0]));
	const text = Buffer.from(match[1]!, 'base64').toString('utf8');
	assert.ok(!/[\u0000-\u001F\u007F-\u009F]/.test(text), JSON.stringify(text));
	assert.ok(text.startsWith('tag'), text);
});
