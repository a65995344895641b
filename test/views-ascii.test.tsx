/** @jsxRuntime automatic */
// A non-UTF-8 locale with NO_COLOR: every frame of every view is plain printable ASCII (ASCII borders,
// '#' bars, ASCII chart symbols), even for metadata with non-ASCII text.
import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {Root} from '../source/app.js';
import {detectTerminalEnv} from '../source/state/env.js';
import {inProcessEngine, sample, tempFolder} from './helpers/fixtures.js';
import {keys, renderInTerminal, type Rendered} from './helpers/render.js';

let folder: {dir: string; remove: () => Promise<void>};
let app: Rendered;

function assertAscii(frame: string, where: string): void {
	const bad = [...frame].filter(ch => ch !== '\n' && (ch < ' ' || ch > '~'));
	assert.deepEqual(bad, [], `${where}: non-ASCII or control characters in:\n${frame}`);
}

test('the locale and NO_COLOR decide glyphs and colour', () => {
	assert.deepEqual(detectTerminalEnv({LANG: 'en_US.UTF-8'}, true), {unicode: true, color: true});
	assert.deepEqual(detectTerminalEnv({LANG: 'C'}, true), {unicode: false, color: true});
	assert.deepEqual(detectTerminalEnv({}, true), {unicode: false, color: true});
	assert.deepEqual(detectTerminalEnv({LC_ALL: 'POSIX', LANG: 'en_US.UTF-8'}, true), {unicode: false, color: true});
	assert.deepEqual(detectTerminalEnv({LC_CTYPE: 'de_DE.utf8'}, true), {unicode: true, color: true});
	assert.deepEqual(detectTerminalEnv({LANG: 'C.UTF-8', NO_COLOR: '1'}, true), {unicode: true, color: false});
	assert.deepEqual(detectTerminalEnv({LANG: 'C.UTF-8', NO_COLOR: ''}, true), {unicode: true, color: true});
	assert.deepEqual(detectTerminalEnv({LANG: 'C.UTF-8', TERM: 'dumb'}, true), {unicode: true, color: false});
	assert.deepEqual(detectTerminalEnv({LANG: 'C.UTF-8'}, false), {unicode: true, color: false});
});

before(async () => {
	folder = await tempFolder('lorascope-ascii-');
	await sample(folder.dir, 'aria.safetensors', 'sd15-lora', {rank: 4, alpha: 4, outputName: 'ária ☂ 日本'});
	for (const epoch of [1, 2, 3]) {
		await sample(folder.dir, `run-00000${epoch}.safetensors`, 'sd15-epoch', {epoch, epochs: 3});
	}

	const engine = inProcessEngine();
	app = renderInTerminal(<Root folder={folder.dir} env={detectTerminalEnv({LANG: 'C', NO_COLOR: '1'}, true)} engine={() => engine} watch={false} />, {columns: 120, rows: 40});
});

after(async () => {
	app.unmount();
	await folder.remove();
});

test('list, every tab, help, too-small and the epoch chart are plain ASCII', async () => {
	let frame = await app.waitFor(f => f.includes('4 files') && !f.includes('loading'));
	assertAscii(frame, 'list');
	assert.match(frame, /^\+-+\+\+-+\+$/m, 'ASCII borders');
	// The non-ASCII output name of aria is shown with '?' for each character it cannot show.
	frame = await app.pressAndWait(/File +aria\.safetensors/, 'G', keys.enter);
	assertAscii(frame, 'overview');
	assert.ok(frame.includes('?ria ? ??'), frame);
	for (const [tab, marker] of [['2', 'keys'], ['3', 'tags in'], ['4', 'Dataset dirs'], ['5', '|dW| per block']] as const) {
		frame = await app.pressAndWait(marker, tab);
		assertAscii(frame, `tab ${tab}`);
	}

	assert.match(frame, /IN01 +#+ +\d/, '# bars');
	frame = await app.pressAndWait('Keys: Detail', '?');
	assertAscii(frame, 'help');
	frame = await app.pressAndWait(f => !f.includes('Keys:'), keys.escape);
	// A lone ESC is only known to be Esc once the next input arrives or a short timeout passes: one at a time.
	frame = await app.pressAndWait('enter open', keys.escape);
	frame = await app.pressAndWait('Block IN01', 'g', keys.space, keys.space, keys.space, 'c');
	assertAscii(frame, 'epoch chart');
	assert.match(frame, /[/\\]-+/, 'ASCII chart lines');
	app.stdout.resize(70, 20);
	frame = await app.waitFor('needs >= 80x24, have 70x20');
	assertAscii(frame, 'too small');
	app.stdout.resize(120, 40);
	await app.waitFor('Block IN01');
});
