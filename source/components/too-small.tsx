// btop-style screen shown instead of a broken layout when the terminal is below the minimum size.
import {Box, Text} from 'ink';
import {tooSmallMessage} from '../layout.js';
import type {TerminalEnv} from '../state/types.js';
import {styleOf} from './theme.js';

export function TooSmall({columns, rows, env}: {columns: number; rows: number; env: TerminalEnv}) {
	const height = Math.max(1, rows - 1);
	return (
		<Box flexDirection="column" width={columns} height={height} justifyContent="center" alignItems="center" overflow="hidden">
			<Text wrap="truncate-end" {...styleOf('warn', env)}>
				{tooSmallMessage(columns, rows, env.unicode)}
			</Text>
			{height > 2 ? (
				<Text wrap="truncate-end" {...styleOf('dim', env)}>
					enlarge the window, or q to quit
				</Text>
			) : null}
		</Box>
	);
}
