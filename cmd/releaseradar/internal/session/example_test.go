package session_test

import (
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
)

func Example() {
	s, err := session.New([]byte("a secret of at least thirty-two bytes"), session.Config{})
	if err != nil {
		panic(err)
	}
	token, _ := s.Issue("alice", 24*time.Hour)
	user, err := s.Verify(token)
	fmt.Println(user, err)
	_, err = s.Verify(token + "x")
	fmt.Println(err)
	// Output:
	// alice <nil>
	// session: invalid or expired token
}
