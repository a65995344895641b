// The detail pane: tab bar, the current tab's lines (windowed, cursor highlighted when focused) and a
// hint line with the definition or description of what the cursor is on.
import {Box} from 'ink';
import {glyphs} from '../state/glyphs.js';
import {seg, type Line, type Segment} from '../state/lines.js';
import {clean} from '../state/text.js';
import {tabIds, tabTitles, type TabId, type TerminalEnv} from '../state/types.js';
import {LineRow, LineView} from './line-view.js';
import {borderColor} from './theme.js';

export type DetailPaneProps = {
	title: string;
	tab: TabId;
	lines: readonly Line[];
	cursor: number;
	scroll: number;
	hint: string;
	width: number;
	height: number;
	focused: boolean;
	env: TerminalEnv;
};

export function TabBar({tab, title, width, env}: {tab: TabId; title: string; width: number; env: TerminalEnv}) {
	const g = glyphs(env);
	const segments: Segment[] = [];
	for (const [index, id] of tabIds.entries()) {
		segments.push(seg(` ${index + 1} ${tabTitles[id]} `, id === tab ? 'selected' : undefined));
		if (index < tabIds.length - 1) {
			segments.push(seg(g.separator, 'dim'));
		}
	}

	segments.push(seg(`  ${title}`, 'dim'));
	return <LineRow line={{segments}} env={env} width={width} highlighted={false} />;
}

export function DetailPane({title, tab, lines, cursor, scroll, hint, width, height, focused, env}: DetailPaneProps) {
	const inner = Math.max(0, width - 2);
	const rows = Math.max(0, height - 4);
	return (
		<Box flexDirection="column" width={width} height={height} borderStyle={glyphs(env).borderStyle} borderColor={borderColor(focused, env)} overflow="hidden">
			<TabBar tab={tab} title={title} width={inner} env={env} />
			<LineView lines={lines} scroll={scroll} rows={rows} width={inner} env={env} cursor={cursor} focused={focused} />
			<LineRow line={{segments: [seg(hint === '' ? ' ' : clean(hint, env, 2000), 'dim')]}} env={env} width={inner} highlighted={false} />
		</Box>
	);
}
