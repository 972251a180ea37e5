//! TCP (RFC 9293) and UDP (RFC 768) headers: views, and the transport
//! checksum over the IPv4 pseudo-header.

use super::checksum::{fold, halves, sum};
use super::{read_u16, read_u32, write_u16, write_u32};

/// Where the ports are in either header.
pub const SPORT: usize = 0;
pub const DPORT: usize = 2;

pub mod tcp {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const MIN_LEN: usize = 20;
    pub const PROTO: u8 = 6;
    /// Flag bits.
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK_FLAG: u8 = 0x10;
}

pub mod udp {
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HDR_LEN: usize = 8;
    pub const PROTO: u8 = 17;
}

/// The checksum of a TCP or UDP segment `seg` between `src` and `dst`.
pub fn ipv4_checksum(src: u32, dst: u32, proto: u8, seg: &[u8]) -> u16 {
    let acc = halves(src) + halves(dst) + u32::from(proto) + seg.len() as u32;
    fold(sum(seg, acc))
}

/// Source and destination port, where TCP and UDP both keep them.
macro_rules! ports {
    ($name:ident) => {
        impl<B: AsRef<[u8]>> $name<B> {
            #[inline(always)]
            pub fn sport(&self) -> u16 {
                read_u16(self.bytes(), SPORT)
            }

            #[inline(always)]
            pub fn dport(&self) -> u16 {
                read_u16(self.bytes(), DPORT)
            }
        }

        impl<B: AsRef<[u8]> + AsMut<[u8]>> $name<B> {
            #[inline(always)]
            pub fn set_ports(&mut self, sport: u16, dport: u16) {
                let b = self.bytes_mut();
                write_u16(b, SPORT, sport);
                write_u16(b, DPORT, dport);
            }
        }
    };
}

ports!(Tcp);
ports!(Udp);

view! {
    /// A view of a TCP header at the start of `B`; [`Tcp::new`] checks that
    /// the 20-byte fixed header fits.
    Tcp, tcp::MIN_LEN
}

impl<B: AsRef<[u8]>> Tcp<B> {
    #[inline(always)]
    pub fn seq(&self) -> u32 {
        read_u32(self.bytes(), tcp::SEQ)
    }

    #[inline(always)]
    pub fn ack(&self) -> u32 {
        read_u32(self.bytes(), tcp::ACK)
    }

    /// The header length the data offset claims.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[tcp::OFFSET] >> 4) * 4
    }

    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.bytes()[tcp::FLAGS]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16(self.bytes(), tcp::CHECKSUM)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Tcp<B> {
    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        write_u16(self.bytes_mut(), tcp::CHECKSUM, c);
    }

    /// Writes a 20-byte header without options, window and urgent pointer
    /// 0, checksum 0.
    #[inline]
    pub fn write(
        mut buf: B,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    ) -> Option<Self> {
        let t = buf.as_mut().get_mut(..tcp::MIN_LEN)?;
        write_u16(t, SPORT, sport);
        write_u16(t, DPORT, dport);
        write_u32(t, tcp::SEQ, seq);
        write_u32(t, tcp::ACK, ack);
        t[tcp::OFFSET] = 5 << 4;
        t[tcp::FLAGS] = flags;
        write_u16(t, tcp::WINDOW, 0);
        write_u32(t, tcp::CHECKSUM, 0); // checksum and urgent pointer
        Some(Tcp(buf))
    }
}

view! {
    /// A view of a UDP header at the start of `B`; [`Udp::new`] checks that
    /// the 8 bytes fit.
    Udp, udp::HDR_LEN
}

impl<B: AsRef<[u8]>> Udp<B> {
    /// The length field: header and payload.
    #[inline(always)]
    pub fn len(&self) -> usize {
        usize::from(read_u16(self.bytes(), udp::LEN))
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() <= udp::HDR_LEN
    }

    /// The checksum; 0 over IPv4 means none was computed.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16(self.bytes(), udp::CHECKSUM)
    }

    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[udp::HDR_LEN..]
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Udp<B> {
    #[inline(always)]
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.bytes_mut(), udp::LEN, len);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        write_u16(self.bytes_mut(), udp::CHECKSUM, c);
    }
}
