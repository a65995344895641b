import assert from 'node:assert/strict';
import {test} from 'node:test';
import {computeLayout, minColumns, minRows, tooSmallMessage, wideMinColumns} from '../source/layout.js';

test('wide layout puts list and detail side by side and fills exactly rows-1', () => {
	const layout = computeLayout({columns: 120, rows: 40});
	assert.equal(layout.mode, 'wide');
	assert.equal(layout.rootHeight, 39);
	assert.equal(layout.list.width + layout.detail.width, 120);
	assert.equal(layout.list.height, layout.detail.height);
	assert.equal(layout.titleHeight + layout.body.height + layout.footerHeight, 39);
	assert.equal(layout.list.height, layout.body.height);
	// Border (2) + column header + position line.
	assert.equal(layout.listRows, layout.list.height - 4);
	// Border (2) + tab bar + hint line.
	assert.equal(layout.detailRows, layout.detail.height - 4);
	assert.ok(layout.list.width >= 56, 'the list keeps room for name, modified and rank');
});

test('below the wide width the detail goes under the list, focused pane larger', () => {
	const listFocus = computeLayout({columns: 100, rows: 30, focus: 'list'});
	const detailFocus = computeLayout({columns: 100, rows: 30, focus: 'detail'});
	for (const layout of [listFocus, detailFocus]) {
		assert.equal(layout.mode, 'stacked');
		assert.equal(layout.list.width, 100);
		assert.equal(layout.detail.width, 100);
		assert.equal(layout.list.height + layout.detail.height, layout.body.height);
		assert.equal(layout.titleHeight + layout.body.height + layout.footerHeight, 29);
	}

	assert.ok(listFocus.list.height > detailFocus.list.height);
	assert.ok(detailFocus.detail.height > listFocus.detail.height);
	assert.equal(computeLayout({columns: wideMinColumns - 1, rows: 40}).mode, 'stacked');
	assert.equal(computeLayout({columns: wideMinColumns, rows: 40}).mode, 'wide');
});

test('the minimum 80x24 is usable: both panes keep at least a few rows', () => {
	for (const focus of ['list', 'detail'] as const) {
		const layout = computeLayout({columns: minColumns, rows: minRows, focus});
		assert.equal(layout.mode, 'stacked');
		assert.equal(layout.rootHeight, 23);
		assert.ok(layout.listRows >= 3, `list rows ${layout.listRows}`);
		assert.ok(layout.detailRows >= 3, `detail rows ${layout.detailRows}`);
		assert.equal(layout.list.height + layout.detail.height + 3, 23);
	}
});

test('too small below 80x24 in either dimension, with the btop-style message', () => {
	assert.equal(computeLayout({columns: 79, rows: 40}).mode, 'too-small');
	assert.equal(computeLayout({columns: 200, rows: 23}).mode, 'too-small');
	const layout = computeLayout({columns: 62, rows: 20});
	assert.equal(layout.mode, 'too-small');
	assert.equal(layout.columns, 62);
	assert.equal(layout.rows, 20);
	assert.equal(tooSmallMessage(62, 20, true), 'lorascope needs ≥ 80×24, have 62×20');
	assert.equal(tooSmallMessage(62, 20, false), 'lorascope needs >= 80x24, have 62x20');
});

test('a stream that reports no size is treated as the minimum, never as zero', () => {
	const layout = computeLayout({columns: 0, rows: Number.NaN});
	assert.equal(layout.columns, minColumns);
	assert.equal(layout.rows, minRows);
	assert.notEqual(layout.mode, 'too-small');
});

test('every size from tiny to huge gives non-negative, consistent boxes', () => {
	for (let columns = 1; columns <= 300; columns += 7) {
		for (let rows = 1; rows <= 120; rows += 5) {
			const layout = computeLayout({columns, rows});
			for (const value of [layout.list.width, layout.list.height, layout.detail.width, layout.detail.height, layout.listRows, layout.detailRows]) {
				assert.ok(value >= 0 && Number.isInteger(value), `${columns}x${rows}: ${value}`);
			}

			assert.ok(layout.rootHeight <= rows - 1 || rows <= 1);
			if (layout.mode !== 'too-small') {
				assert.ok(layout.titleHeight + layout.body.height + layout.footerHeight <= rows - 1);
			}
		}
	}
});
