// The dashboard's folder listing: files found with their sizes and times, and the prefetched
// listing that starts before Ink loads, replayed once to the app and then listed afresh.
import assert from 'node:assert/strict';
import {mkdir, stat, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {fileSystemSource, withPrefetchedListing} from '../source/hooks/folder-source.js';
import type {FoundFile} from '../source/state/file-row.js';
import {tempFolder} from './helpers/fixtures.js';

let folder: {dir: string; remove: () => Promise<void>};
const count = 300;

before(async () => {
	folder = await tempFolder('lorascope-folder-source-');
	await mkdir(path.join(folder.dir, 'sub'));
	for (let i = 0; i < count; i++) {
		// Sizes differ per file so a mixed-up size would show.
		await writeFile(path.join(folder.dir, i % 3 === 0 ? 'sub' : '', `f${i}.safetensors`), Buffer.alloc(i + 1));
	}

	await writeFile(path.join(folder.dir, 'notes.txt'), 'not a LoRA');
});

after(async () => folder.remove());

async function listAll(list: typeof fileSystemSource.list, dir: string, signal = new AbortController().signal): Promise<{files: FoundFile[]; batches: number}> {
	const files: FoundFile[] = [];
	let batches = 0;
	await list(dir, found => {
		batches++;
		files.push(...found);
	}, signal);
	return {files, batches};
}

async function expectEveryFile(files: FoundFile[]): Promise<void> {
	assert.equal(files.length, count, 'each candidate once, notes.txt left out');
	assert.equal(new Set(files.map(f => f.path)).size, count);
	for (const file of files) {
		const info = await stat(file.path);
		assert.equal(file.sizeBytes, info.size, file.path);
		assert.equal(file.mtimeMs, info.mtimeMs, file.path);
	}
}

test('the listing finds every candidate with its size and time', async () => {
	const {files} = await listAll(fileSystemSource.list, folder.dir);
	await expectEveryFile(files);
});

test('a prefetched listing is replayed once, whole, then the folder is listed afresh', async () => {
	const source = withPrefetchedListing(fileSystemSource, folder.dir);
	// Let part or all of it finish before the app asks, as module loading does.
	await new Promise(resolve => {
		setTimeout(resolve, 20);
	});
	const first = await listAll(source.list, folder.dir);
	await expectEveryFile(first.files);
	await writeFile(path.join(folder.dir, 'late.safetensors'), Buffer.alloc(7));
	const second = await listAll(source.list, folder.dir);
	assert.ok(second.files.some(f => f.path.endsWith('late.safetensors')), 'the second call lists afresh');
	assert.equal(second.files.length, count + 1);
	const other = await listAll(source.list, path.join(folder.dir, 'sub'));
	assert.equal(other.files.length, count / 3, 'another folder is listed on its own');
});

test('an unreadable prefetched folder reaches the app as a one-line reason when it asks', async () => {
	const source = withPrefetchedListing(fileSystemSource, path.join(folder.dir, 'missing'));
	await new Promise(resolve => {
		setTimeout(resolve, 20);
	});
	// scanFolder reports an unreadable root through onError and lists nothing.
	const errors: string[] = [];
	const files: FoundFile[] = [];
	await source.list(path.join(folder.dir, 'missing'), found => files.push(...found), new AbortController().signal, (_file, reason) => errors.push(reason));
	assert.deepEqual(files, []);
	assert.deepEqual(errors, ['not found']);
});
