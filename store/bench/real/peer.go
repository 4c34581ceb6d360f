package main

import (
	"context"
	"log/slog"
)

func runPeer(ctx context.Context, cfg config, log *slog.Logger) error { return nil }
