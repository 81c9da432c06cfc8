package mixerclient

// WaitPrefetches waits for the background prefetches started so far.
func WaitPrefetches(c *Client) { c.refills.Wait() }
