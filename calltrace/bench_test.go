package calltrace

import (
	"fmt"
	"testing"
)

// BenchmarkRecordMiss is the common case: a message of an untraced call
// (here a REGISTER) while calls are traced.
func BenchmarkRecordMiss(b *testing.B) {
	r := New(Config{})
	for i := range 100 {
		play(r, natCall(fmt.Sprint("call-", i))[:3])
	}
	msg, f := []byte(register), flow(callerNAT)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		r.Record(true, f, msg)
	}
}

// BenchmarkRecordHit stores an in-dialog message (the ACK) of a traced
// call. The recorder is renewed, off the clock, before the call is full.
func BenchmarkRecordHit(b *testing.B) {
	call := natCall("hit")
	msg, f := []byte(call[9].text), flow(callerNAT)
	var r *Recorder
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		if i%150 == 0 {
			b.StopTimer()
			r = New(Config{})
			play(r, call[:1])
			b.StartTimer()
		}
		r.Record(true, f, msg)
	}
}

// BenchmarkRecordHitFull is a message of a traced call that is full: it
// only moves the call state on.
func BenchmarkRecordHitFull(b *testing.B) {
	call := natCall("full")
	r := New(Config{MaxMessages: 1})
	play(r, call[:1])
	msg, f := []byte(call[9].text), flow(callerNAT)
	b.ReportAllocs()
	for b.Loop() {
		r.Record(true, f, msg)
	}
}

// BenchmarkRecordStart starts a trace for a new INVITE, evicting the
// oldest of 100.
func BenchmarkRecordStart(b *testing.B) {
	r := New(Config{})
	msgs := make([][]byte, 1024)
	for i := range msgs {
		msgs[i] = invite(fmt.Sprintf("start-%d@10.0.0.5", i))
	}
	f := flow(callerNAT)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Record(true, f, msgs[i%len(msgs)])
		i++
	}
}

func BenchmarkAnalyze(b *testing.B) {
	tr := record(b, "c", natCall("c"))
	b.ReportAllocs()
	for b.Loop() {
		Analyze(tr)
	}
}
