package entitlement

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// SealKeySize is the length of Config.SealKey: an AES-256 key.
const SealKeySize = 32

// sealer encrypts issued keys with AES-256-GCM. The additional data names the owner
// and the key ID, so a sealed key moved to another user's row does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("entitlement: Config.SealKey must be %d bytes, not %d", SealKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("entitlement: seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("entitlement: seal key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func sealAD(userID, keyID string) []byte {
	return []byte("tollgate/entitlement sealed key v1\x00" + userID + "\x00" + keyID)
}

// seal returns a random nonce followed by the ciphertext of raw.
func (s *sealer) seal(userID, keyID, raw string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(raw)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("entitlement: seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, []byte(raw), sealAD(userID, keyID)), nil
}

// open reverses seal.
func (s *sealer) open(userID, keyID string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return "", errors.New("entitlement: sealed key is truncated")
	}
	raw, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAD(userID, keyID))
	if err != nil {
		return "", errors.New("entitlement: sealed key does not open (was Config.SealKey changed?)")
	}
	return string(raw), nil
}
