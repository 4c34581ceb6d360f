package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Masters returns the masters serving slots, ordered by their first slot, as
// the first running node that answers sees them.
func (c *Cluster) Masters(ctx context.Context) ([]*ClusterNode, error) {
	view, _, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	var ms []clusterLine
	for _, l := range view {
		if l.master() && l.slots != "" {
			ms = append(ms, l)
		}
	}
	slices.SortFunc(ms, func(a, b clusterLine) int { return a.firstSlot() - b.firstSlot() })
	nodes := make([]*ClusterNode, len(ms))
	for i, l := range ms {
		if nodes[i], err = c.byID(l.id); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// MasterOf returns the master serving the slot of key, as the first running
// node that answers sees it.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*ClusterNode, error) {
	view, n, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	slot, err := n.rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster keyslot on %s: %w", n.Addr, err)
	}
	for _, l := range view {
		if l.master() && l.serves(int(slot)) {
			return c.byID(l.id)
		}
	}
	return nil, fmt.Errorf("no master serves slot %d of %q (seen from %s)", slot, key, n.Addr)
}

func (c *Cluster) byID(id string) (*ClusterNode, error) {
	for _, n := range c.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node of this cluster has ID %s", id)
}

// anyView returns CLUSTER NODES from the first running node that answers.
func (c *Cluster) anyView(ctx context.Context) ([]clusterLine, *ClusterNode, error) {
	var errs []error
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		view, err := n.view(ctx)
		if err == nil {
			return view, n, nil
		}
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("no running node answers: %w", errors.Join(errs...))
}

// clusterLine is one line of CLUSTER NODES, without nodes that are failing
// or have no address.
type clusterLine struct {
	id       string
	flags    []string
	masterID string // "" for a master
	slots    string // "0-5460 5462", "" for a replica
}

func (l clusterLine) master() bool { return slices.Contains(l.flags, "master") }

func (l clusterLine) firstSlot() int {
	lo, _, _ := strings.Cut(strings.Fields(l.slots)[0], "-")
	n, _ := strconv.Atoi(lo)
	return n
}

func (l clusterLine) serves(slot int) bool {
	for _, r := range strings.Fields(l.slots) {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && a <= slot && slot <= b {
			return true
		}
	}
	return false
}

func (n *ClusterNode) clusterOK(ctx context.Context) error {
	info, err := n.rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("cluster info on %s: %w", n.Addr, err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("%s: cluster_state is not ok", n.Addr)
	}
	return nil
}

// view returns the nodes n knows as healthy, from CLUSTER NODES.
func (n *ClusterNode) view(ctx context.Context) ([]clusterLine, error) {
	out, err := n.rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster nodes on %s: %w", n.Addr, err)
	}
	var view []clusterLine
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		l := clusterLine{id: f[0], flags: strings.Split(f[2], ",")}
		if slices.ContainsFunc(l.flags, func(s string) bool { return s == "fail" || s == "fail?" || s == "noaddr" || s == "handshake" }) {
			continue
		}
		if f[3] != "-" {
			l.masterID = f[3]
		}
		var slots []string
		for _, s := range f[8:] {
			if !strings.HasPrefix(s, "[") { // "[slot->-id]": a slot being migrated
				slots = append(slots, s)
			}
		}
		l.slots = strings.Join(slots, " ")
		view = append(view, l)
	}
	return view, nil
}
