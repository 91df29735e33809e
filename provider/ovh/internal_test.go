package ovh

import (
	"testing"
	"time"
)

// TestDefaultPoll: by default a lost reply is observed for about 30 s, as
// OVH's task list can lag by more than a few seconds.
func TestDefaultPoll(t *testing.T) {
	c, err := New(Config{Endpoint: "http://127.0.0.1:1/1.0", AppKey: "k", AppSecret: "s", ConsumerKey: "c"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := time.Duration(c.poll.Tries-1) * c.poll.Interval; got < 25*time.Second || got > 40*time.Second {
		t.Errorf("default observation spans %s (%d looks %s apart), want about 30s", got, c.poll.Tries, c.poll.Interval)
	}
	c, err = New(Config{Endpoint: "http://127.0.0.1:1/1.0", AppKey: "k", AppSecret: "s", ConsumerKey: "c",
		Poll: PollConfig{Tries: 2, Interval: time.Millisecond}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.poll != (PollConfig{Tries: 2, Interval: time.Millisecond}) {
		t.Errorf("poll = %+v, want the configured 2 looks 1ms apart", c.poll)
	}
}
