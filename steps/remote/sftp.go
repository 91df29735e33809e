package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/pkg/sftp"
)

// sftpClient opens an SFTP session that is closed when ctx is done. The
// returned function releases it.
func (c *Client) sftpClient(ctx context.Context) (*sftp.Client, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	sc, err := sftp.NewClient(c.conn)
	if err != nil {
		return nil, nil, fmt.Errorf("open sftp session: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	return sc, func() { stop(); sc.Close() }, nil
}

// ctxErr prefers the context's error over the one a closed session caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Upload writes everything read from local to remotePath with permission
// mode, atomically: the data goes to a temporary file next to it, which is
// synced and renamed over remotePath, so readers see the old or the new file
// and never a partial one. The temporary file is removed on failure.
func (c *Client) Upload(ctx context.Context, local io.Reader, remotePath string, mode os.FileMode) error {
	if err := c.upload(ctx, local, remotePath, mode); err != nil {
		return fmt.Errorf("upload %s to %s: %w", remotePath, c.addr, err)
	}
	return nil
}

func (c *Client) upload(ctx context.Context, local io.Reader, remotePath string, mode os.FileMode) (err error) {
	sc, release, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	defer release()

	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	dir, base := path.Split(remotePath)
	tmp := path.Join(dir, "."+base+".takeover-"+hex.EncodeToString(rnd[:]))
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = sc.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode.Perm()); err != nil {
		return ctxErr(ctx, err)
	}
	if _, err := io.Copy(f, local); err != nil {
		return ctxErr(ctx, err)
	}
	if err := f.Sync(); err != nil && !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
		return ctxErr(ctx, err)
	}
	if err := f.Close(); err != nil {
		return ctxErr(ctx, err)
	}
	if err := sc.PosixRename(tmp, remotePath); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

// Download copies remotePath to w.
func (c *Client) Download(ctx context.Context, remotePath string, w io.Writer) error {
	if err := c.download(ctx, remotePath, w); err != nil {
		return fmt.Errorf("download %s from %s: %w", remotePath, c.addr, err)
	}
	return nil
}

func (c *Client) download(ctx context.Context, remotePath string, w io.Writer) error {
	sc, release, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	defer release()
	f, err := sc.Open(remotePath)
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer f.Close()
	if _, err := f.WriteTo(w); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

// WriteFile atomically writes data to remotePath with permission mode (see
// Upload).
func (c *Client) WriteFile(ctx context.Context, remotePath string, data []byte, mode os.FileMode) error {
	return c.Upload(ctx, bytes.NewReader(data), remotePath, mode)
}

// ReadFile returns the contents of remotePath; files larger than
// OutputLimit fail with ErrOutputLimit.
func (c *Client) ReadFile(ctx context.Context, remotePath string) ([]byte, error) {
	buf := &capBuffer{limit: OutputLimit}
	if err := c.Download(ctx, remotePath, buf); err != nil {
		return nil, err
	}
	data, dropped := buf.bytes()
	if dropped > 0 {
		return nil, fmt.Errorf("read %s from %s: %w: larger than %d bytes", remotePath, c.addr, ErrOutputLimit, OutputLimit)
	}
	return data, nil
}
